"""The demo's pre-training part (`examples/pretrain_demo.py` via `examples/demo.py --quick`): three tiny
families trained on a 300-document slice of the default corpus, reloaded through the Auto classes,
shown at work, and summed up in a table; plus the unigram baseline's arithmetic."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
import torch

from triformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer
from triformers.pretraining import ModelSize, build_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import demo  # noqa: E402  (examples/ is not a package)
import pretrain_demo  # noqa: E402

AUTO = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM, "encoder-decoder": AutoModelForSeq2SeqLM}
ROW = re.compile(r"^(encoder|decoder|encoder-decoder)\s+(\w+)\s+([\d.]+)M\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)s$")


def table_rows(printed: str) -> list[tuple[str, ...]]:
    return [m.groups() for line in printed.splitlines() if (m := ROW.match(line))]


def test_quick_demo_pretrains_reloads_and_tabulates_three_families(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRIFORMERS_CACHE", str(tmp_path / "cache"))  # corpus and token caches stay in tmp
    out = tmp_path / "demo"
    args = demo.parse_args(["--quick", "--out", str(out)])
    assert args.quick and args.out == out and not args.skip_pretrain
    for section in pretrain_demo.SECTIONS:
        section(args)
    printed = capsys.readouterr().out

    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for family, auto in AUTO.items():
        tokenizer = AutoTokenizer.from_pretrained(out / family)
        model = auto.from_pretrained(out / family)
        assert model.family == family
        batch = tokenizer(["Return the value."], return_tensors="pt")
        kwargs = {"decoder_input_ids": torch.zeros((1, 1), dtype=torch.long)} if family == "encoder-decoder" else {}
        with torch.no_grad():
            assert torch.isfinite(model(**batch, **kwargs).logits).all()
    # T5 v1.0 scales the decoder output by d_model**-0.5: training and the reload must agree on d_model
    trained = build_config("t5", AutoTokenizer.from_pretrained(out / "encoder-decoder"),
                           ModelSize(hidden_size=pretrain_demo.QUICK["hidden_size"]))
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out / "encoder-decoder").config
    assert trained.output_scale == reloaded.output_scale == pretrain_demo.QUICK["hidden_size"] ** -0.5

    rows = table_rows(printed)
    assert [r[0] for r in rows] == list(AUTO)
    assert [r[1] for r in rows] == ["bert", "gpt2", "t5"]
    for _, _, _, steps, loss, baseline, _ in rows:
        assert int(steps) == pretrain_demo.QUICK["steps"]
        assert math.isfinite(float(loss)) and math.isfinite(float(baseline)) and float(baseline) > 0
    # each family was put to work: the mask line, both decodings, the seed's sentinel example
    assert "[MASK] ->" in printed
    assert "greedy : Return a new|" in printed and "sampled: Return a new|" in printed
    assert f"input : {pretrain_demo.SEED_EXAMPLE}" in printed and "filled: Thank you [" in printed

    # --skip-pretrain: nothing is trained again; the same checkpoints are shown and the same table printed
    mtime = (out / "encoder" / "model.safetensors").stat().st_mtime_ns
    for section in pretrain_demo.SECTIONS:
        section(demo.parse_args(["--skip-pretrain", "--out", str(out)]))
    again = capsys.readouterr().out
    assert "pre-training skipped" in again and table_rows(again) == rows
    assert (out / "encoder" / "model.safetensors").stat().st_mtime_ns == mtime


def test_unigram_baseline_is_add_one_cross_entropy_over_predicted_tokens():
    # CLM scores labels[:, 1:]; MLM and span corruption score every label that is not -100
    batch = {"labels": torch.tensor([[5, 1, -100, 2]])}
    assert pretrain_demo.predicted_tokens(batch, "clm").tolist() == [1, 2]
    assert pretrain_demo.predicted_tokens(batch, "mlm").tolist() == [5, 1, 2]
    counts = torch.tensor([3.0, 0.0, 1.0, 0.0])  # N = 4, V = 4: p = (4, 1, 2, 1) / 8

    class Constant(torch.nn.Module):  # a "model" whose loss is always 1.5
        def forward(self, **batch):
            return type("Out", (), {"loss": torch.tensor(1.5)})()

    held_out = [{"labels": torch.tensor([[0, 2, -100]])}, {"labels": torch.tensor([[1]])}]
    loss, baseline, tokens = pretrain_demo.held_out_losses(Constant(), held_out, "mlm", counts)
    assert tokens == 3 and loss == pytest.approx(1.5)
    assert baseline == pytest.approx(-(math.log(4 / 8) + math.log(2 / 8) + math.log(1 / 8)) / 3)


def test_sentinel_spans_split_a_decoded_t5_target():
    class Specials:
        pad_token, eos_token = "<pad>", "</s>"

    decoded = "<pad><extra_id_0> for inviting<extra_id_1> last </s><pad>"
    assert pretrain_demo.sentinel_spans(decoded, Specials()) == {0: "for inviting", 1: "last"}


def test_demo_chats_with_the_real_smollm2(capsys):
    """The demo's chat section: SmolLM2-135M-Instruct from its GGUF file, its chat template, greedy generate."""
    if not demo.SMOLLM2.is_file():
        pytest.skip(f"no {demo.SMOLLM2} (scripts/fetch_assets.sh fetches it)")
    demo.chat(demo.parse_args(["--quick"]))
    printed = capsys.readouterr().out
    reply = next(line for line in printed.splitlines() if line.startswith("assistant: "))
    assert len(reply.removeprefix("assistant: ").strip()) > 3
    assert "30 layers, 3 kv heads" in printed and "tokens in" in printed
