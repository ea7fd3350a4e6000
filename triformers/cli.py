"""The `triformers` command (also `python -m triformers`): one argparse sub-command per verb.

Each verb is a `Command` in `COMMANDS`: `add_arguments(parser)` declares its flags and
`run(namespace)` parses them into the typed options of the library function it calls. Adding a verb
(`finetune`, `generate`, `bench`, ...) is one `register(Command(...))` call.

    triformers pretrain --family decoder --steps 200 --out runs/gpt       # stdlib docstring corpus
    triformers pretrain --dialect t5 --data corpus/ --layers 4 --hidden-size 256 --bf16 --out runs/t5
    triformers pretrain --dialect t5 --data corpus/ --out runs/t5 --resume  # continue from the last checkpoint
    torchrun --nproc_per_node=4 -m triformers pretrain --family encoder --data corpus/ --out runs/bert
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from .cli_args import add_trainer_arguments, trainer_arguments
from .errors import TriformersError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add a sub-command to `triformers`."""
    COMMANDS[command.name] = command
    return command


# ---- pretrain ------------------------------------------------------------------------------------------
def _pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to train")
    choice = what.add_mutually_exclusive_group(required=True)
    choice.add_argument("--family", choices=["encoder", "decoder", "encoder-decoder"],
                        help="bert (MLM), gpt2 (CLM) or t5 (span corruption)")
    choice.add_argument("--dialect", help="bert | roberta | gpt2 | bloom | t5 | bart (any registered dialect)")
    what.add_argument("--data", help="text / .jsonl file or folder (default: Python stdlib docstrings)")
    what.add_argument("--tokenizer", help="tokenizer folder (default: train one of the dialect's kind)")
    what.add_argument("--vocab-size", type=int, default=8000)
    what.add_argument("--max-docs", type=int, help="read at most this many documents")
    what.add_argument("--document-per", choices=["line", "paragraph", "file"], default="line",
                      help="what a document is in plain-text files (default: line)")
    what.add_argument("--eval-fraction", type=float, default=0.02, help="share of documents held out")
    what.add_argument("--cache-dir", help="where the token cache and default corpus go")
    size = parser.add_argument_group("model size")
    size.add_argument("--hidden-size", type=int, default=256)
    size.add_argument("--layers", type=int, default=4)
    size.add_argument("--heads", type=int, default=4)
    size.add_argument("--intermediate-size", type=int, help="default: 4 * hidden size")
    size.add_argument("--seq-len", "--max-length", dest="seq_len", type=int, default=128)
    size.add_argument("--dropout", type=float, help="default: the dialect's")
    loop = parser.add_argument_group("training")
    loop.add_argument("--out", default="out", help="output folder (a Hugging Face checkpoint at the end)")
    loop.add_argument("--steps", type=int, default=1000)
    loop.add_argument("--lr", type=float, default=5e-4)
    loop.add_argument("--warmup", type=int, default=None, help="warmup steps (default: 5%% of --steps)")
    loop.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    loop.add_argument("--min-lr-ratio", type=float, default=0.1)
    loop.add_argument("--fsdp", action="store_true",
                      help="under torchrun: shard the model, gradients and optimizer state (FSDP) instead of DDP")
    add_trainer_arguments(loop, log_every=1)


def pretrain_options(args: argparse.Namespace):
    """The parsed flags as `PretrainOptions` (typed dataclasses, validated by the library)."""
    from .pretrain import ModelSize, PretrainOptions
    training = trainer_arguments(
        args, max_steps=args.steps, warmup_steps=args.warmup if args.warmup is not None else args.steps // 20,
        min_lr_ratio=args.min_lr_ratio, fsdp=args.fsdp)
    size = ModelSize(hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
                     intermediate_size=args.intermediate_size, seq_len=args.seq_len, dropout=args.dropout)
    return PretrainOptions(family=args.family, dialect=args.dialect, data=args.data, tokenizer=args.tokenizer,
                           vocab_size=args.vocab_size, max_docs=args.max_docs, document_per=args.document_per,
                           eval_fraction=args.eval_fraction, cache_dir=args.cache_dir, size=size, training=training)


def _run_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import pretrain

    result = pretrain(pretrain_options(args))
    summary = f"done: {result.step} steps, {result.tokens} tokens in {result.seconds:.1f}s, last loss {result.loss:.4f}"
    if result.eval_loss is not None:
        summary += f", held-out loss {result.eval_loss:.4f} (perplexity {result.eval_perplexity:.1f})"
    print(f"{summary}; checkpoint in {args.out}")
    return 0


register(Command("pretrain", "pre-train a model of any family from scratch", _pretrain_arguments, _run_pretrain))


from . import cli_use  # noqa: E402,F401  (registers fill-mask, generate, text2text, classify, ner, qa, embed)
from . import finetune as _finetune  # noqa: E402

register(Command("finetune", "fine-tune a model: text / token classification, extractive QA, seq2seq",
                 _finetune.add_arguments, _finetune.run_command))


# ---- bench -------------------------------------------------------------------------------------------------
def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer reps, no biggest models")
    parser.add_argument("--smoke", action="store_true", help="self-test in seconds; its figures mean nothing")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="substring filter (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("--json", metavar="PATH", help="results file (default bench/results/latest.json)")
    parser.add_argument("--reps", type=int, help="timed repetitions per contender")


def _run_bench(args: argparse.Namespace) -> int:
    """Run the side-by-side suite of the source tree (bench/ is not part of the installed package)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__main__.py").is_file():
        raise TriformersError(f"the benchmark suite lives in bench/ of a triformers clone; none beside {root}")
    argv = [sys.executable, "-m", "bench", *(["--quick"] if args.quick else []), *(["--smoke"] if args.smoke else []),
            *(["--list"] if args.list else []), *[f"--case={c}" for c in args.case],
            *([f"--json={args.json}"] if args.json else []), *([f"--reps={args.reps}"] if args.reps else [])]
    return subprocess.call(argv, cwd=root)


register(Command("bench", "benchmark triformers against transformers side by side (python -m bench)",
                 _bench_arguments, _run_bench))


# ---- entry point -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triformers", description="encoder, decoder and encoder-decoder "
                                     "transformers with Hugging Face checkpoint parity")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return COMMANDS[args.command].run(args)
    except TriformersError as err:  # a clear message instead of a traceback; anything else is a bug
        print(f"triformers {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
