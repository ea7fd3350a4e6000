"""Property-based fuzzing (hypothesis) of everything read from files or passed by callers.

The contract for each target: a correct result, or a `TriformersError` subclass whose message names
the file, key or argument; never a hang, a crash, an allocation sized by an absurd number, or an
exception from deep inside torch / tokenizers. Each target prints how many cases it tried
(`pytest -s tests/test_fuzz.py`); TRIFORMERS_FUZZ_EXAMPLES=2000 runs a long fuzz (default 100 each).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from triformers.errors import TriformersError
from triformers.tokenization import train_tokenizer

EXAMPLES = int(os.environ.get("TRIFORMERS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="TRIFORMERS_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
GPT2 = dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=1, eos_token_id=1)
T5 = dict(vocab_size=64, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2, decoder_start_token_id=0,
          pad_token_id=0, eos_token_id=1)
# any JSON value, weighted towards the ones that break sizes: huge, negative, non-finite, wrong type
JSON_VALUES = st.one_of(
    st.integers(-2, 70), st.sampled_from([0, -1, 10**12, 2**63, 2**31, 10**7]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.booleans(), st.none(),
    st.lists(st.integers(-3, 100), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@pytest.fixture(scope="module")
def tallies():
    counts: dict[str, Counter] = {}
    yield counts
    for target, count in counts.items():
        print(f"\nfuzz {target}: {sum(count.values())} cases ({dict(count)})")


def contract(tally: Counter, names: tuple[str, ...], call):
    """Run `call`; a TriformersError must name one of `names`; anything else fails the test."""
    try:
        result = call()
    except TriformersError as err:
        message = str(err)
        assert any(n in message for n in names), f"error does not say where: {message!r} (expected one of {names})"
        tally[type(err).__name__] += 1
        return None
    tally["result"] += 1
    return result


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **GPT2)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(gpt2_folder):
    torch.manual_seed(0)
    return {"gpt2": AutoModelForCausalLM.from_pretrained(gpt2_folder),
            "t5": AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model("t5", **T5)).eval()}


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tokenizer = train_tokenizer(["hello world", "fuzzing finds what tests forget"] * 5, kind="bpe", vocab_size=80,
                                model_max_length=16)
    tokenizer.save_pretrained(str(folder))
    return folder


def _fresh(src, dst):
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(data=st.data())
def test_fuzz_config_json(gpt2_folder, tmp_path, tallies, data):
    """config.json with keys changed to any JSON value, deleted or added; loaded with its weights."""
    folder = _fresh(gpt2_folder, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(config) + ["n_inner", "auto_map", "num_labels"]))
        if data.draw(st.booleans()):
            config[key] = data.draw(JSON_VALUES)
        else:
            config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))  # NaN / Infinity are written as JSON allows
    tally = tallies.setdefault("config.json", Counter())
    where = ("config.json", "config (gpt2)", "model.safetensors")
    model = contract(tally, where, lambda: AutoModelForCausalLM.from_pretrained(folder))
    if model is not None:
        assert model.config.vocab_size == 64 and model.config.hidden_size == 16


@pytest.mark.parametrize("key, value", [("vocab_size", 10**12), ("n_embd", 10**9), ("n_layer", 10**7),
                                        ("n_positions", 10**12), ("n_inner", 2**40), ("vocab_size", 2**63)])
def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, key, value):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", **GPT2, key: value}))
    with pytest.raises(TriformersError, match=r"is beyond any real model .* refused"):
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path))  # would need terabytes


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_bytes(gpt2_folder, tmp_path, tallies, data):
    """A valid small model.safetensors with bytes flipped, cut short, or an absurd header length."""
    folder = _fresh(gpt2_folder, tmp_path / "m")
    path = folder / "model.safetensors"
    raw = bytearray(path.read_bytes())
    header = struct.unpack("<Q", raw[:8])[0]
    kind = data.draw(st.sampled_from(["flip_header", "flip_any", "truncate", "header_length"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "header_length":
        raw[:8] = struct.pack("<Q", data.draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, header + 16))))
    else:
        end = 8 + header if kind == "flip_header" else len(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, end - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw))
    tally = tallies.setdefault(f"safetensors/{kind}", Counter())
    contract(tally, ("model.safetensors",), lambda: AutoModelForCausalLM.from_pretrained(folder))


@FUZZ
@given(data=st.data())
def test_fuzz_shard_index(gpt2_folder, tmp_path, tallies, data):
    """model.safetensors.index.json with any shape of weight_map: names, types, missing entries."""
    folder = _fresh(gpt2_folder, tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    names = st.one_of(st.just("model-00001-of-00001.safetensors"), st.text(max_size=12),
                      st.sampled_from(["../x", "/etc/passwd", ".", "", "a/../../b", "model.safetensors"]), JSON_VALUES)
    keys = ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.ln_f.bias"]
    index = data.draw(st.one_of(
        st.fixed_dictionaries({"weight_map": st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), names,
                                                             max_size=4)}),
        st.fixed_dictionaries({"weight_map": JSON_VALUES, "metadata": JSON_VALUES}), JSON_VALUES))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    tally = tallies.setdefault("index.json", Counter())
    contract(tally, ("model.safetensors.index.json", "model-00001-of-00001.safetensors"),
             lambda: AutoModelForCausalLM.from_pretrained(folder))


def _mutate_json(value, data):
    """Replace one node of a JSON tree (chosen by walking down at random) with a random value."""
    if isinstance(value, dict) and value and data.draw(st.integers(0, 3)):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate_json(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.integers(0, 3)):
        i = data.draw(st.integers(0, len(value) - 1))
        return value[:i] + [_mutate_json(value[i], data)] + value[i + 1:]
    return data.draw(JSON_VALUES)


@FUZZ
@given(data=st.data())
def test_fuzz_tokenizer_json(tokenizer_folder, tmp_path, tallies, data):
    """tokenizer.json with one node replaced, or its bytes cut short; then loaded and called."""
    folder = _fresh(tokenizer_folder, tmp_path / "t")
    path = folder / "tokenizer.json"
    if data.draw(st.integers(0, 4)):
        path.write_text(json.dumps(_mutate_json(json.loads(path.read_text()), data)))
    else:
        text = path.read_bytes()
        path.write_bytes(text[: data.draw(st.integers(0, len(text) - 1))])
    tally = tallies.setdefault("tokenizer.json", Counter())
    tokenizer = contract(tally, ("tokenizer.json",), lambda: AutoTokenizer.from_pretrained(str(folder)))
    if tokenizer is not None:
        contract(tally, ("tokeniz",), lambda: tokenizer(["hello world", ""], padding=True))


TEXTS = st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3), st.none(), st.integers(),
                  st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none()), max_size=3))
CALL_ARGUMENTS = {
    "text_pair": TEXTS,
    "padding": st.one_of(st.booleans(), st.sampled_from(["longest", "max_length", "do_not_pad", "left", ""]),
                         st.integers(-1, 2)),
    "truncation": st.one_of(st.booleans(), st.none(), st.sampled_from(["longest_first", "only_first",
                                                                      "only_second", "do_not_truncate", "x"])),
    "max_length": st.one_of(st.none(), st.integers(-3, 40), st.just(10**12), st.floats(0, 5), st.booleans()),
    "stride": st.one_of(st.integers(-3, 40), st.just(10**12), st.none(), st.floats(0, 3)),
    "pad_to_multiple_of": st.one_of(st.none(), st.integers(-3, 9), st.just(10**12), st.text(max_size=2)),
    "return_tensors": st.sampled_from([None, "pt", "np", "tf", 1]),
    "padding_side": st.sampled_from([None, "left", "right", "middle", 0]),
    "add_special_tokens": st.booleans(),
    "is_split_into_words": st.booleans(),
    "return_offsets_mapping": st.booleans(),
    "return_length": st.booleans(),
}


@FUZZ
@given(text=TEXTS, arguments=st.dictionaries(st.sampled_from(sorted(CALL_ARGUMENTS)), st.none(), max_size=5),
       data=st.data())
def test_fuzz_tokenizer_call(tokenizer_folder, tallies, text, arguments, data):
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    kwargs = {name: data.draw(CALL_ARGUMENTS[name]) for name in arguments}
    tally = tallies.setdefault("tokenizer call", Counter())
    names = ("text", *kwargs, "pad", "truncat", "max_length", "sequences", "pair", "batch")
    out = contract(tally, names, lambda: tokenizer(text, **kwargs))
    if out is not None and kwargs.get("return_tensors") == "pt":
        assert all(isinstance(v, torch.Tensor) for k, v in out.items() if k != "length")


GENERATE_ARGUMENTS = {
    "max_new_tokens": st.one_of(st.integers(-2, 14), st.sampled_from([10**7, 10**12, 2**63]), st.floats(0, 3)),
    "min_new_tokens": st.one_of(st.integers(-2, 30), st.none()),
    "max_length": st.one_of(st.integers(-2, 20), st.just(10**9)),
    "do_sample": st.booleans(),
    "temperature": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 3), st.text(max_size=2)),
    "top_k": st.one_of(st.none(), st.integers(-2, 100), st.floats(0, 3)),
    "top_p": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    "num_beams": st.one_of(st.integers(-1, 4), st.just(10**9)),
    "num_return_sequences": st.integers(-1, 4),
    "repetition_penalty": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 3)),
    "length_penalty": st.floats(allow_nan=True, allow_infinity=True),
    "no_repeat_ngram_size": st.integers(-1, 4),
    "early_stopping": st.sampled_from([True, False, "never", "sometimes", None]),
    "eos_token_id": st.one_of(st.none(), st.integers(-2, 70), st.lists(st.integers(-2, 70), max_size=3)),
    "pad_token_id": st.one_of(st.none(), st.integers(-2, 70)),
    "decoder_start_token_id": st.one_of(st.none(), st.integers(-2, 70)),
    "forced_bos_token_id": st.one_of(st.none(), st.integers(-2, 70)),
    "forced_eos_token_id": st.one_of(st.none(), st.integers(-2, 70)),
    "seed": st.one_of(st.none(), st.integers(-2, 5)),
    "use_cache": st.booleans(),
    "streamer": st.sampled_from([None, 3, "stdout"]),
    "temprature": st.just(1.0),  # a misspelt argument
}


@FUZZ
@given(family=st.sampled_from(["gpt2", "t5"]), arguments=st.dictionaries(
    st.sampled_from(sorted(GENERATE_ARGUMENTS)), st.none(), max_size=6), batch=st.integers(1, 2),
    data=st.data())
def test_fuzz_generate_arguments(models, tallies, family, arguments, batch, data):
    model = models[family]
    kwargs = {name: data.draw(GENERATE_ARGUMENTS[name]) for name in arguments}
    ids = torch.tensor([[5, 6, 7]] * batch)
    tally = tallies.setdefault(f"generate/{family}", Counter())
    names = ("generate", "input_ids", "attention_mask", *kwargs)
    out = contract(tally, names, lambda: model.generate(ids, **kwargs))
    if out is not None:
        assert out.dim() == 2 and out.dtype == torch.long and int(out.min()) >= 0 and int(out.max()) < 64
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in kwargs.values())
