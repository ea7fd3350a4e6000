"""Pre-training data and the `pretrain` command: the token cache, the split, packing, and the output
folder of every registered dialect loading in transformers with the same logits."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from triformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer
from triformers.cli import main as cli_main
from triformers.pretraining.corpus import (PackedBlocks, data_files, default_corpus, iter_documents, split_documents,
                             tokenize_corpus)
from triformers.dialects import DIALECTS, Recipe, register
from triformers.dialects.gpt2 import GPT2Dialect
from triformers.objectives import pack_documents
from triformers.pretraining import ModelSize, PretrainOptions, pretrain, resolve_dialect

DIALECT_NAMES = [d for d in ("bert", "roberta", "gpt2", "bloom", "t5", "bart") if d in DIALECTS]
FAMILY_AUTO = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM,
               "encoder-decoder": AutoModelForSeq2SeqLM}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("triformers-cache")


@pytest.fixture(scope="session")
def corpus_file(cache_dir):
    """The first 200 stdlib docstrings (the default corpus, cut short to keep tests fast)."""
    return default_corpus(cache_dir, max_docs=200)


@pytest.fixture(scope="session")
def tokenizer(corpus_file):
    from triformers.tokenization import train_tokenizer

    return train_tokenizer(iter_documents([corpus_file]), kind="bpe", vocab_size=400)


def test_default_corpus_is_stdlib_docstrings(corpus_file):
    docs = list(iter_documents([corpus_file]))
    assert len(docs) == 200
    assert all(len(d) >= 40 for d in docs)
    assert sum(len(d) for d in docs) > 20_000  # English prose, not stray one-liners


def test_reading_text_jsonl_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\nthird\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "from json"}) + "\n\n" + json.dumps({"text": " "}) + "\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    files = data_files(tmp_path)
    assert [f.name for f in files] == ["a.txt", "b.jsonl"]
    assert list(iter_documents(files)) == ["first line", "second line", "third", "from json"]
    assert list(iter_documents(files[:1], document_per="paragraph")) == ["first line", "second line\nthird"]
    assert list(iter_documents(files, max_docs=2)) == ["first line", "second line"]
    (tmp_path / "bad.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(Exception, match=r"bad.jsonl:1: expected an object with a string 'text' field"):
        list(iter_documents([tmp_path / "bad.jsonl"]))


def test_token_cache_reused_when_unchanged_and_rebuilt_when_changed(tmp_path, tokenizer, caplog):
    data = tmp_path / "corpus.txt"
    data.write_text("".join(f"document number {i} says hello\n" for i in range(50)))
    first = tokenize_corpus([data], tokenizer)  # default: cached beside the data
    assert first.path.parent == tmp_path / ".triformers-cache"
    assert first.tokens.dtype == np.uint16 and len(first) == 50
    expected = tokenizer.backend.encode("document number 7 says hello", add_special_tokens=False).ids
    assert first.document(7).tolist() == expected
    written = first.path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="triformers"):
        again = tokenize_corpus([data], tokenizer)
    assert again.path == first.path and again.path.stat().st_mtime_ns == written
    assert "re-using the token cache" in caplog.text
    with open(data, "a") as handle:
        handle.write("one more document\n")
    os.utime(data, ns=(written + 10**9, written + 10**9))  # an mtime that surely differs
    rebuilt = tokenize_corpus([data], tokenizer)
    assert rebuilt.path != first.path and len(rebuilt) == 51
    assert not first.path.exists()  # the stale cache of this tokenizer is removed


def test_split_is_by_document_fixed_and_disjoint():
    train, held_out = split_documents(100, 0.1, seed=3)
    assert len(held_out) == 10 and len(train) == 90
    assert set(train).isdisjoint(held_out) and set(train) | set(held_out) == set(range(100))
    again = split_documents(100, 0.1, seed=3)
    assert np.array_equal(again[1], held_out)
    assert not np.array_equal(split_documents(100, 0.1, seed=4)[1], held_out)


def test_packed_blocks_match_pack_documents(tmp_path, tokenizer):
    data = tmp_path / "docs.txt"
    data.write_text("".join(f"text {i} " * (i % 7 + 1) + "\n" for i in range(40)))
    corpus = tokenize_corpus([data], tokenizer, cache_dir=tmp_path / "cache")
    ids = np.arange(len(corpus))
    eos = tokenizer.eos_token_id
    blocks = PackedBlocks(corpus, ids, 16, separator=eos)
    reference = pack_documents([np.array(corpus.document(i)) for i in ids], 16, eos)  # (n_blocks, 16)
    assert len(blocks) == len(reference)
    assert np.array_equal(np.stack([blocks[i] for i in range(len(blocks))]), reference.numpy())
    wrapped = PackedBlocks(corpus, ids, 14, separator=eos, prefix=[1], suffix=[2])
    assert wrapped[3].tolist()[0] == 1 and wrapped[3].tolist()[-1] == 2 and len(wrapped[3]) == 16


def test_resolve_dialect_defaults_and_errors():
    assert resolve_dialect("decoder", None) == "gpt2"
    assert resolve_dialect(None, None) == "gpt2"  # `triformers pretrain` with no flags: the decoder family
    with pytest.raises(Exception, match="is a decoder model, not --family encoder"):
        resolve_dialect("encoder", "gpt2")
    with pytest.raises(Exception, match="--family must be one of"):
        resolve_dialect("decoders", None)


def _options(dialect: str, out, cache_dir, steps: int = 2, **training) -> PretrainOptions:
    """A tiny run with the pretrain command's training defaults (held-out loss every 10% of the run)."""
    return PretrainOptions(
        dialect=dialect, max_docs=200, vocab_size=400, cache_dir=str(cache_dir), eval_fraction=0.05,
        size=ModelSize(hidden_size=32, layers=2, heads=2, seq_len=32),
        training=dataclasses.replace(PretrainOptions().training, output_dir=str(out), max_steps=steps,
                                     per_device_train_batch_size=4, per_device_eval_batch_size=4,
                                     learning_rate=1e-3, disable_tqdm=True, plot_loss=False, **training))


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_transformers_loads_the_pretrained_folder(dialect, tmp_path, cache_dir):
    """The output folder is a Hugging Face checkpoint: same logits (fp32, atol 1e-5) and same token ids."""
    transformers = pytest.importorskip("transformers")
    result = pretrain(_options(dialect, tmp_path, cache_dir))
    assert result.step == 2 and np.isfinite(result.loss) and result.eval_loss is not None
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).is_file(), name
    family = DIALECTS[dialect].family
    ours = FAMILY_AUTO[family].from_pretrained(tmp_path)
    theirs_cls = {"encoder": transformers.AutoModelForMaskedLM, "decoder": transformers.AutoModelForCausalLM,
                  "encoder-decoder": transformers.AutoModelForSeq2SeqLM}[family]
    theirs = theirs_cls.from_pretrained(tmp_path).eval()
    text = ["Return the sum of a and b.", "Open the file and read it"]
    our_tok, their_tok = AutoTokenizer.from_pretrained(str(tmp_path)), transformers.AutoTokenizer.from_pretrained(
        tmp_path)
    if our_tok.pad_token is None:  # GPT-2 style: no pad token, pad with EOS on both sides
        our_tok.pad_token = their_tok.pad_token = our_tok.eos_token
    batch = our_tok(text, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == their_tok(text, padding=True, return_tensors="pt")["input_ids"].tolist()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if family == "encoder-decoder":
        inputs["decoder_input_ids"] = batch["input_ids"][:, :5]
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_cli_pretrain_smoke(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    flags = ["--max-docs", "200", "--vocab-size", "400", "--hidden-size", "32", "--layers", "1", "--heads", "2",
             "--seq-len", "32", "--batch-size", "2", "--out", str(out), "--cache-dir", str(cache_dir), "--no-progress"]
    code = cli_main(["pretrain", "--family", "decoder", "--steps", "3", "--save-every", "2", *flags])
    assert code == 0
    assert "done: 3 steps" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3] and "eval_loss" in lines[-2]
    assert "train_loss" in lines[-1]  # the run's summary line, as transformers' log_history ends
    assert (out / "checkpoints" / "checkpoint-0000002" / "trainer_state.pt").is_file()
    assert (out / "config.json").is_file()
    try:
        import matplotlib  # noqa: F401  (the optional `plot` extra)
    except ImportError:
        pass  # the run logs that it skipped the PNG
    else:
        assert (out / "loss_curve.png").stat().st_size > 1000
    # a second fresh run into the same folder must not silently mix with the old checkpoints
    code = cli_main(["pretrain", "--family", "decoder", "--steps", "1", *flags])
    assert code == 1 and "--resume" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "triformers", "pretrain", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--family" in done.stdout and "--resume" in done.stdout


class TinyGPT2Dialect(GPT2Dialect):
    """A user's own dialect: GPT-2's checkpoint format under a new model_type, with its own recipe and sizes."""

    model_type = "tiny-gpt2-test"
    recipe = Recipe("clm", "bpe", size=(("hidden_size", 24), ("layers", 1), ("heads", 3), ("seq_len", 32)))


@pytest.fixture
def custom_dialect():
    register(TinyGPT2Dialect())
    yield TinyGPT2Dialect.model_type
    del DIALECTS[TinyGPT2Dialect.model_type]


def test_a_registered_dialect_pretrains_with_its_own_recipe(custom_dialect, tmp_path, cache_dir, capsys):
    """`triformers pretrain --dialect <it>` and `pretrain(...)` use the recipe's objective, tokenizer and sizes
    (a size flag still wins); the output folder reloads through the Auto classes as that model_type."""
    out = tmp_path / "cli"
    assert cli_main(["pretrain", "--dialect", custom_dialect, "--steps", "2", "--max-docs", "200", "--vocab-size",
                     "300", "--batch-size", "2", "--eval-fraction", "0.1", "--out", str(out), "--cache-dir",
                     str(cache_dir), "--no-progress", "--no-plot"]) == 0
    assert "done: 2 steps" in capsys.readouterr().out
    from_cli = AutoModelForCausalLM.from_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == custom_dialect and (config["n_embd"], config["n_layer"], config["n_head"]) == (
        24, 1, 3)
    assert from_cli.config.max_positions == 32  # the recipe's seq_len sized the position table

    options = _options(custom_dialect, tmp_path / "api", cache_dir)
    options = dataclasses.replace(options, size=ModelSize(layers=2))  # the user's layers, the recipe's other sizes
    result = pretrain(options)
    assert result.step == 2 and np.isfinite(result.loss)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "api")
    assert (reloaded.config.hidden_size, reloaded.config.num_layers, reloaded.config.num_heads) == (24, 2, 3)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "api"))
    ids = tokenizer(["Return the sum."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(reloaded(input_ids=ids).logits).all()


MODERN_DECODERS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt_neox", "opt"]


@pytest.mark.parametrize("dialect", MODERN_DECODERS)
def test_cli_pretrain_each_modern_decoder(dialect, tmp_path, cache_dir, capsys):
    """`triformers pretrain --dialect X` (CLM) for today's decoders: the run finishes and its folder loads in
    transformers with the same logits (fp32, atol 1e-5)."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    code = cli_main(["pretrain", "--dialect", dialect, "--steps", "2", "--max-docs", "200", "--vocab-size", "400",
                     "--hidden-size", "32", "--layers", "2", "--heads", "2", "--seq-len", "32", "--batch-size", "2",
                     "--out", str(out), "--cache-dir", str(cache_dir), "--no-progress"])
    assert code == 0 and "done: 2 steps" in capsys.readouterr().out
    ours = AutoModelForCausalLM.from_pretrained(out)
    assert ours.config.model_type == dialect
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = AutoTokenizer.from_pretrained(str(out))(["Return the sum of a and b."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-4)
