"""The `pretrain` / `finetune` flags, generated from the option dataclasses: no flags means the dataclass
defaults, flags set exactly their fields, every README command parses, and the generator's rules."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from typing import Literal

import pytest
from conftest import ROOT

from triformers.cli import build_parser
from triformers.cli import main as cli_main
from triformers.cli.flags import add_flags, parse_flags
from triformers.finetuning import FinetuneOptions
from triformers.pretraining import ModelSize, PretrainOptions
from triformers.training import option

COMMANDS = {"pretrain": PretrainOptions, "finetune": FinetuneOptions}


def parse(argv: list[str]):
    """The options a `triformers ...` command line describes, without running it."""
    return parse_flags(COMMANDS[argv[0]], build_parser().parse_args(argv))


def test_no_flags_are_the_dataclass_defaults():
    assert parse(["pretrain"]) == PretrainOptions()
    assert parse(["finetune", "--task", "seq2seq", "--model", "m", "--train", "t.jsonl"]) == FinetuneOptions(
        task="seq2seq", model="m", train="t.jsonl")


def test_flags_set_exactly_their_fields():
    options = parse(["pretrain", "--dialect", "bert", "--hidden-size", "64", "--seq-len", "32", "--lr", "1e-3",
                     "--steps", "20", "--warmup", "0.2", "--schedule", "linear", "--no-plot", "--no-progress",
                     "--resume", "--out", "runs/x", "--eval-strategy", "no", "--adam_beta2", "0.95"])
    defaults = PretrainOptions().training
    assert options == PretrainOptions(dialect="bert", size=ModelSize(hidden_size=64, seq_len=32),
                                      training=dataclasses.replace(
        defaults, learning_rate=1e-3, max_steps=20, warmup_steps=0.2, lr_scheduler_type="linear", plot_loss=False,
        disable_tqdm=True, resume_from_checkpoint=True, output_dir="runs/x", eval_strategy="no", adam_beta2=0.95))
    finetune = parse(["finetune", "--task", "text-classification", "--model", "m", "--train", "t.csv", "--labels",
                      "neg,pos", "--epochs", "2", "--save-total-limit", "none", "--resume", "ckpt", "--bf16"])
    assert finetune.labels == "neg,pos" and finetune.training == dataclasses.replace(
        FinetuneOptions("text-classification", "m", "t").training, num_train_epochs=2.0, save_total_limit=None,
        resume_from_checkpoint="ckpt", bf16=True)


def readme_commands() -> list[list[str]]:
    """The `triformers pretrain` / `finetune` command lines of the README's Pre-training and Fine-tuning sections."""
    text = (ROOT / "README.md").read_text()
    sections = re.search(r"## Pre-training.*?(?=\n## Pipelines)", text, re.S).group(0)
    commands = []
    for line in sections.replace("\\\n", " ").splitlines():
        if not line.startswith(("triformers ", "torchrun ")):
            continue  # prose
        words = shlex.split(line.split("#")[0])
        if "..." not in words and words[words.index("triformers") + 1] in COMMANDS:
            commands.append(words[words.index("triformers") + 1:])
    return commands


def test_every_readme_command_parses():
    commands = readme_commands()
    assert len(commands) >= 8 and {c[0] for c in commands} == {"pretrain", "finetune"}
    for argv in commands:
        options = parse(argv)
        assert options.training.output_dir == (argv[argv.index("--out") + 1] if "--out" in argv else "out"), argv


def test_a_bad_value_is_an_error_naming_the_field(capsys):
    assert cli_main(["pretrain", "--lr", "nan"]) == 1
    assert "learning_rate=nan must be a finite number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "--schedule", "polynomial"])  # not one of the choices
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--model", "m", "--train", "t"])  # --task is required


# ---- the generator's rules, on a dataclass of every kind of field ----------------------------------------------
@dataclasses.dataclass
class Inner:
    rate: float = option(0.5, "a rate", flags=("-r",))
    on: bool = option(True, "on by default", no_flags=("--off",))


@dataclasses.dataclass
class Outer:
    name: str = option(help="required")
    count: int | None = option(None, "a count or none")
    mode: Literal["a", "b"] = option("a", "a choice")
    pair: tuple[float, float] = option((1.0, 2.0), "two numbers")
    words: list[str] = option(help="one or more", factory=lambda: ["x"])
    quiet: bool = option(False, "off by default", flags=("-q",))
    inner: Inner = option(help="inner flags", factory=lambda: Inner(rate=0.25))


def outer(argv: list[str]) -> Outer:
    parser = argparse.ArgumentParser()
    add_flags(parser, Outer, "outer")
    return parse_flags(Outer, parser.parse_args(argv))


def test_generated_flags_follow_the_annotations():
    assert outer(["--name", "n"]) == Outer(name="n")
    assert outer(["--name", "n"]).inner.rate == 0.25  # a nested field's defaults are the parent's default
    got = outer(["--name", "n", "--count", "3", "--mode", "b", "--pair", "3", "4", "--words", "p", "q", "-q",
                 "-r", "0.1", "--off"])
    assert got == Outer("n", 3, "b", (3.0, 4.0), ["p", "q"], True, Inner(0.1, False))
    assert outer(["--name", "n", "--count", "none", "--no-on"]).count is None
    assert outer(["--name", "n", "--no-on"]).inner == Inner(0.25, False)
    with pytest.raises(SystemExit):
        outer(["--name", "n", "--mode", "c"])
    with pytest.raises(SystemExit):
        outer(["--name", "n", "--no-quiet"])  # only a field that is on by default gets a --no- flag


def test_two_fields_with_one_flag_are_an_error():
    @dataclasses.dataclass
    class Clash:
        first: int = option(1, "one", flags=("--x",))
        second: int = option(2, "two", flags=("--x",))

    with pytest.raises(argparse.ArgumentError, match="conflicting option string"):
        add_flags(argparse.ArgumentParser(), Clash, "clash")
