"""No code from files: hostile pickles are refused through every entry point, remote code is never run,
and names read from files never become paths outside the model folder (see README, SECURITY)."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file

from triformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                        AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                        AutoModelForTokenClassification, AutoTokenizer, CheckpointError, ConfigError)
from triformers.errors import TokenizerError
from triformers.tokenization import train_tokenizer

CONFIGS = {
    "bert": dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                 max_position_embeddings=16),
    "gpt2": dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=1, eos_token_id=1),
    "t5": dict(vocab_size=64, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2, decoder_start_token_id=0,
               pad_token_id=0, eos_token_id=1),
}
HEADS = {"bert": AutoModelForMaskedLM, "gpt2": AutoModelForCausalLM, "t5": AutoModelForSeq2SeqLM}
# every Auto class, with a checkpoint of a family it accepts
AUTO_CASES = [(AutoModel, "bert"), (AutoModelForMaskedLM, "bert"), (AutoModelForSequenceClassification, "bert"),
              (AutoModelForTokenClassification, "bert"), (AutoModelForQuestionAnswering, "bert"),
              (AutoModelForCausalLM, "gpt2"), (AutoModelForSeq2SeqLM, "t5"), (AutoConfig, "t5")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved tiny checkpoint per family, with a tokenizer beside it."""
    tokenizer = train_tokenizer(["hello world", "a small corpus of words"] * 5, kind="bpe", vocab_size=64,
                                model_max_length=16)
    out = {}
    for dialect, keys in CONFIGS.items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(dialect)
        HEADS[dialect].from_config(AutoConfig.for_model(dialect, **keys)).save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))
        out[dialect] = folder
    return out


@pytest.fixture
def copy(folders, tmp_path):
    def make(dialect: str):
        folder = tmp_path / dialect
        folder.mkdir()
        for path in folders[dialect].iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
        return folder

    return make


class WritesAMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def poison(folder, marker, name="pytorch_model.bin", legacy=False) -> dict:
    """Replace model.safetensors by a pickle whose loading would create `marker`; return the tensors."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**state, "payload": WritesAMarker(marker)}, folder / name,
               _use_new_zipfile_serialization=not legacy)
    return state


@pytest.mark.parametrize("auto, dialect", AUTO_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_hostile_pickle_is_refused_by_every_auto_class(copy, tmp_path, auto, dialect):
    folder = copy(dialect)
    marker = tmp_path / "pwned"
    poison(folder, marker)
    if auto is AutoConfig:  # the config alone never reads weights
        assert AutoConfig.from_pretrained(folder).model_type == dialect
    else:
        with pytest.raises(CheckpointError, match=r"refused to load .*pytorch_model\.bin.*only tensors"):
            auto.from_pretrained(folder)
    assert not marker.exists(), "a checkpoint ran code while being loaded"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_hostile_pickle_in_a_shard_of_a_bin_index(copy, tmp_path, legacy):
    folder = copy("bert")
    marker = tmp_path / "pwned"
    state = poison(folder, marker, name="pytorch_model-00002-of-00002.bin", legacy=legacy)
    first = {k: v for i, (k, v) in enumerate(state.items()) if i % 2 == 0}
    torch.save(first, folder / "pytorch_model-00001-of-00002.bin")
    weight_map = {k: "pytorch_model-00001-of-00002.bin" if k in first else "pytorch_model-00002-of-00002.bin"
                  for k in state}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"refused to load .*pytorch_model-00002-of-00002\.bin"):
        AutoModelForMaskedLM.from_pretrained(folder)
    assert not marker.exists()


def test_hostile_pickle_beside_a_tokenizer_is_never_read(copy, tmp_path):
    folder = copy("gpt2")
    marker = tmp_path / "pwned"
    poison(folder, marker)
    with open(folder / "vocab.pkl", "wb") as handle:  # any pickle in the folder: never opened
        pickle.dump(WritesAMarker(marker), handle)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer("hello world")["input_ids"]
    assert not marker.exists()


def test_auto_map_and_custom_classes_are_ignored_loudly(copy, caplog):
    folder = copy("gpt2")
    config = json.loads((folder / "config.json").read_text())
    config.update(auto_map={"AutoModelForCausalLM": "modeling_evil.EvilModel"}, architectures=["EvilModel"])
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with caplog.at_level(logging.WARNING, logger="triformers"):
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    warnings = [r.getMessage() for r in caplog.records]
    assert any("config.json: ignoring 'auto_map'" in w for w in warnings), warnings
    assert any("tokenizer_config.json: ignoring 'auto_map'" in w for w in warnings), warnings
    model.save_pretrained(folder / "saved")
    tokenizer.save_pretrained(str(folder / "saved"))
    saved = json.loads((folder / "saved" / "config.json").read_text())
    assert "auto_map" not in saved and saved["architectures"] == ["GPT2LMHeadModel"]
    assert "auto_map" not in json.loads((folder / "saved" / "tokenizer_config.json").read_text())


def test_a_custom_model_type_or_tokenizer_class_is_refused(copy):
    folder = copy("gpt2")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "evil"}))
    with pytest.raises(ConfigError, match=r"config\.json.*'evil'"):
        AutoModelForCausalLM.from_pretrained(folder)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config, "tokenizer_class": "EvilTokenizer"}))
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: unknown tokenizer_class 'EvilTokenizer'"):
        AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("load", [lambda f, **kw: AutoConfig.from_pretrained(f, **kw),
                                  lambda f, **kw: AutoModelForCausalLM.from_pretrained(f, **kw),
                                  lambda f, **kw: AutoModel.from_pretrained(f, **kw),
                                  lambda f, **kw: AutoTokenizer.from_pretrained(str(f), **kw)],
                         ids=["AutoConfig", "AutoModelForCausalLM", "AutoModel", "AutoTokenizer"])
def test_trust_remote_code_true_is_refused_and_false_is_harmless(folders, tmp_path, load):
    with pytest.raises((ConfigError, TokenizerError), match=r"trust_remote_code=True is refused"):
        load(folders["gpt2"], trust_remote_code=True)
    loaded = load(folders["gpt2"], trust_remote_code=False)
    if hasattr(loaded, "save_pretrained"):
        loaded.save_pretrained(str(tmp_path / "saved"))  # the argument is not written back into any file
        for path in (tmp_path / "saved").glob("*.json"):
            assert "trust_remote_code" not in path.read_text(), path.name
    else:
        assert "trust_remote_code" not in loaded.extra


def _shard(folder, name) -> None:
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name for k in state}}))


@pytest.mark.parametrize("name", ["../../x.safetensors", "/etc/passwd", "sub/../../x.safetensors", "", 7, None,
                                  ["model-00001-of-00001.safetensors"]], ids=repr)
def test_shard_names_that_leave_the_folder_or_are_not_names(copy, name):
    folder = copy("bert")
    _shard(folder, name)
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: shard name .* refused"):
        AutoModelForMaskedLM.from_pretrained(folder)


def test_a_symlinked_shard_is_followed_but_must_be_a_checkpoint(copy, tmp_path):
    """Decision: symlinks are followed (every file of a Hugging Face cache snapshot is a symlink into
    blobs/, outside the snapshot folder); only a real checkpoint can load through one, and a link to
    any other file gets a CheckpointError naming the shard, never its contents."""
    folder = copy("bert")
    _shard(folder, "model-00001-of-00001.safetensors")
    blob = tmp_path / "blobs" / "0123abcd"
    blob.parent.mkdir()
    (folder / "model-00001-of-00001.safetensors").rename(blob)
    os.symlink(blob, folder / "model-00001-of-00001.safetensors")
    AutoModelForMaskedLM.from_pretrained(folder)  # the cache layout works
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n" * 4)
    (folder / "model-00001-of-00001.safetensors").unlink()
    os.symlink(secret, folder / "model-00001-of-00001.safetensors")
    with pytest.raises(CheckpointError, match=r"model-00001-of-00001\.safetensors") as err:
        AutoModelForMaskedLM.from_pretrained(folder)
    assert "hunter2" not in str(err.value)


def test_file_names_inside_tokenizer_config_are_never_followed(copy, tmp_path):
    """tokenizer_config.json may name `tokenizer_file` / `vocab_file`: triformers reads only the fixed
    names of the folder (tokenizer.json, vocab.txt, ...) and drops these keys when saving."""
    folder = copy("gpt2")
    outside = tmp_path / "outside.json"
    outside.write_text("{not a tokenizer")
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config.update(tokenizer_file=str(outside), vocab_file="../../../outside.json", merges_file="/etc/passwd")
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer("hello world")["input_ids"] == AutoTokenizer.from_pretrained(str(copy("t5")))(
        "hello world")["input_ids"]  # the same tokenizer.json as an untouched folder
    tokenizer.save_pretrained(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert not {"tokenizer_file", "vocab_file", "merges_file"} & set(saved)


def test_saved_files_are_readable_like_any_other_file(folders, tmp_path):
    """Atomic saving goes through mkstemp (mode 0600); the final files get the umask's usual mode."""
    mask = os.umask(0o022)
    try:
        AutoModelForCausalLM.from_pretrained(folders["gpt2"]).save_pretrained(tmp_path)
        AutoTokenizer.from_pretrained(str(folders["gpt2"])).save_pretrained(str(tmp_path))
    finally:
        os.umask(mask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {"0o644"}, modes
