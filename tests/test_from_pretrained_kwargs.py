"""transformers' `from_pretrained` keywords: each works or is refused with an InputError naming it, none is saved.

A tiny GPT-2 and a tiny BERT saved by transformers 5.24; every keyword of its `from_pretrained` that issue 14
lists is walked through the Auto classes and the model classes; anything else that is no config key of the
checkpoint's dialect is an error naming it, so that no keyword is swallowed (or written into config.json).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers as tr

import triformers
from triformers.errors import ConfigError, InputError, ModelNotFoundError

LOADING_KEYS = ("torch_dtype", "dtype", "device_map", "low_cpu_mem_usage", "attn_implementation", "use_safetensors",
                "local_files_only", "cache_dir", "subfolder", "token", "force_download", "trust_remote_code",
                "revision")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.manual_seed(0)
    model = tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=61, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                             bos_token_id=0, eos_token_id=0))
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder)
    return folder, model.eval()


def works(folder, **kwargs):
    return triformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)


@pytest.mark.parametrize("name, value", [
    ("torch_dtype", torch.bfloat16), ("torch_dtype", "auto"), ("torch_dtype", "float16"), ("dtype", torch.float32),
    ("dtype", "auto"), ("device_map", "auto"), ("device_map", "cpu"), ("device_map", torch.device("cpu")),
    ("device_map", {"": "cpu"}), ("low_cpu_mem_usage", True), ("attn_implementation", "sdpa"),
    ("attn_implementation", "eager"), ("use_safetensors", True), ("local_files_only", True), ("cache_dir", None),
    ("token", "hf_unused"), ("force_download", True), ("trust_remote_code", False), ("revision", "main"),
    ("subfolder", ""),
])
def test_each_loading_keyword_works_and_is_not_saved(name, value, gpt2, tmp_path):
    folder, theirs = gpt2
    model = works(folder, **{name: value})
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = {"torch_dtype": value, "dtype": value}.get(name, torch.float32)
    expected = {"auto": torch.float32, "float16": torch.float16}.get(expected, expected)
    assert model.dtype == expected
    if expected == torch.float32:
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, theirs(ids).logits, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert not (set(LOADING_KEYS) - {"dtype"}) & set(written)  # dtype: what the saved weights are, as transformers
    assert set(written) <= set(json.loads((folder / "config.json").read_text())) | {"dtype"}


def test_torch_dtype_bfloat16_gives_a_bf16_model_and_auto_reads_the_saved_dtype(gpt2, tmp_path):
    folder, _ = gpt2
    model = triformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in model.parameters())
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert triformers.AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype="auto").dtype == torch.bfloat16
    config = json.loads((tmp_path / "config.json").read_text())  # an older file: `torch_dtype`, fp32 weights
    config["torch_dtype"] = config.pop("dtype")
    shutil.copy(folder / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert triformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="auto").dtype == torch.bfloat16
    model = triformers.DecoderModel.from_pretrained(folder, head="lm", torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with pytest.raises(InputError, match="disagree"):
        triformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16, torch_dtype=torch.bfloat16)


@pytest.mark.parametrize("name, value, message", [
    ("device_map", {"transformer.h.0": "cpu", "lm_head": "cuda:1"}, "one device"),
    ("device_map", "disk", "not supported"),
    ("device_map", "nowhere", "not a device"),
    ("attn_implementation", "flash_attention_2", "flash_attention_2"),
    ("torch_dtype", "int8", "int8"),
    ("use_fast", True, "use_fast"),
    ("load_in_8bit", True, "load_in_8bit"),
    ("made_up_key", 3, "made_up_key"),
])
def test_refused_keywords_name_themselves(name, value, message, gpt2):
    folder, _ = gpt2
    for load in (triformers.AutoModelForCausalLM.from_pretrained,
                 lambda f, **kw: triformers.DecoderModel.from_pretrained(f, head="lm", **kw)):
        with pytest.raises(InputError, match=message):
            load(folder, **{name: value})


def test_trust_remote_code_true_is_refused(gpt2):
    with pytest.raises(ConfigError, match="trust_remote_code=True is refused"):  # as everywhere in triformers
        works(gpt2[0], trust_remote_code=True)


def test_config_keys_of_the_dialect_still_override(gpt2):
    folder, _ = gpt2
    model = works(folder, n_layer=1, output_attentions=True, use_cache=False)
    assert model.config.num_layers == 1
    with torch.no_grad():
        assert len(model(torch.tensor([[1, 2]])).attentions) == 1


def test_use_safetensors_false_reads_the_bin(gpt2, tmp_path):
    folder, theirs = gpt2
    with pytest.raises(Exception, match="use_safetensors=False"):
        works(folder, use_safetensors=False)
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    state = {k: v.contiguous() for k, v in theirs.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink(missing_ok=True)
    model = works(tmp_path, use_safetensors=False)
    with torch.no_grad():
        ids = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(model(ids).logits, theirs(ids).logits, atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="use_safetensors=True"):
        works(tmp_path, use_safetensors=True)


def test_subfolder_cache_dir_and_local_files_only(gpt2, tmp_path):
    folder, _ = gpt2
    shutil.copytree(folder, tmp_path / "repo" / "inner")
    assert works(tmp_path / "repo", subfolder="inner").config.num_layers == 2
    with pytest.raises(ModelNotFoundError, match="subfolder"):
        works(tmp_path / "repo", subfolder="../elsewhere")
    snapshot = tmp_path / "cache" / "models--someone--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(folder, snapshot)
    (tmp_path / "cache" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "cache" / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    model = works("someone/tiny", cache_dir=tmp_path / "cache", local_files_only=True)
    assert model.config.num_layers == 2
    with pytest.raises(ModelNotFoundError, match="local_files_only"):
        works("someone/absent", cache_dir=tmp_path / "cache", local_files_only=True)
    config = triformers.AutoConfig.from_pretrained("someone/tiny", cache_dir=tmp_path / "cache", local_files_only=True)
    assert config.num_layers == 2


def test_encoder_takes_them_too(tmp_path):
    model = tr.BertForMaskedLM(tr.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=20))
    model.save_pretrained(tmp_path)
    ours = triformers.AutoModelForMaskedLM.from_pretrained(tmp_path, torch_dtype=torch.bfloat16, device_map="cpu",
                                                           attn_implementation="eager", low_cpu_mem_usage=True)
    assert ours.dtype == torch.bfloat16 and ours.attn_implementation == "eager"
    with pytest.raises(InputError, match="use_cache"):
        ours(torch.tensor([[1, 2]]), use_cache=True)
    with pytest.raises(InputError, match="n_layer"):  # a GPT-2 key is no BERT key
        triformers.AutoModelForMaskedLM.from_pretrained(tmp_path, n_layer=1)
