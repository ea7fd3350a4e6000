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


INPUT_DTYPES = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool, torch.float16,
                torch.float32]
BAD_IDS = st.sampled_from([-1, -128, 64, 127])  # put at one position of in-range ids
MASK_VALUES = st.sampled_from([0, 0.5, 2, -1, float("nan")])  # put at one position of a mask of ones


@FUZZ
@given(family=st.sampled_from(["gpt2", "t5"]), data=st.data())
def test_fuzz_forward_inputs(models, tallies, family, data):
    """A forward call with ids, masks and positions of any integer / float / bool dtype, values in and out of
    range, and shapes that may not match: logits of the right shape, or an InputError naming the tensor."""
    model = models[family]
    batch, length = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 18))
    dtype = data.draw(st.sampled_from(INPUT_DTYPES))
    ids = torch.tensor(data.draw(st.lists(st.integers(0, 63), min_size=batch * length, max_size=batch * length)))
    if data.draw(st.booleans()):
        ids[data.draw(st.integers(0, ids.numel() - 1))] = data.draw(BAD_IDS)
    kwargs = {"input_ids": ids.view(batch, length).to(dtype)}
    if data.draw(st.booleans()):
        mask_length = length + data.draw(st.sampled_from([0, 0, 0, 1, -1]))
        mask = torch.ones(batch, max(mask_length, 0))
        if mask.numel() and data.draw(st.booleans()):
            mask.view(-1)[data.draw(st.integers(0, mask.numel() - 1))] = data.draw(MASK_VALUES)
        kwargs["attention_mask"] = mask
    if family == "gpt2" and data.draw(st.booleans()):
        kwargs["position_ids"] = (torch.arange(length) + data.draw(st.integers(-1, 4))).expand(batch, length)
    if family == "t5":
        kwargs["decoder_input_ids"] = kwargs["input_ids"][:, :2]
    tally = tallies.setdefault(f"forward/{family}", Counter())
    out = contract(tally, tuple(kwargs), lambda: model(**kwargs))
    if out is not None:
        rows = kwargs["decoder_input_ids"].shape[1] if family == "t5" else length
        assert out.logits.shape == (batch, rows, 64) and bool(out.logits.isfinite().all())


# ---- files of every type, nesting and value class (see README, Security) -----------------------------------
@pytest.fixture(scope="module")
def full_folder(tmp_path_factory, gpt2_folder, tokenizer_folder):
    """A GPT-2 checkpoint with a tokenizer, a trainer state, a metrics log and data files beside it."""
    folder = tmp_path_factory.mktemp("full")
    for source in (gpt2_folder, tokenizer_folder):
        for path in source.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
    torch.save({"step": 3, "tokens": 10, "world_size": 1, "global_batch": 2, "model": {"w": torch.ones(8)},
                "optimizer": {}, "rng": [{}]}, folder / "trainer_state.pt")
    (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    (folder / "train.jsonl").write_text('{"text": "hello", "label": "pos"}\n{"text": "bye", "label": "neg"}\n')
    (folder / "corpus.jsonl").write_text('{"text": "a document"}\n')
    return folder


def _read_everything(folder):
    """Everything triformers reads from such a folder, each reader's error naming its file."""
    from triformers.finetuning.data import read_records
    from triformers.pretraining.corpus import iter_documents
    from triformers.training.checkpoints import read_state
    from triformers.training.metrics import read_metrics

    return {"model": lambda: AutoModelForCausalLM.from_pretrained(folder),
            "tokenizer": lambda: AutoTokenizer.from_pretrained(str(folder))(["hello world", "x"]),
            "trainer_state.pt": lambda: read_state(folder / "trainer_state.pt"),
            "metrics.jsonl": lambda: read_metrics(folder / "metrics.jsonl"),
            "train.jsonl": lambda: read_records(folder / "train.jsonl"),
            "corpus.jsonl": lambda: list(iter_documents([folder / "corpus.jsonl"]))}


READ_BY = {"config.json": "model", "model.safetensors": "model", "tokenizer.json": "tokenizer",
           "tokenizer_config.json": "tokenizer", "special_tokens_map.json": "tokenizer",
           "trainer_state.pt": "trainer_state.pt", "metrics.jsonl": "metrics.jsonl", "train.jsonl": "train.jsonl",
           "corpus.jsonl": "corpus.jsonl"}
SPECIAL_KINDS = ["fifo", "dev_zero", "folder", "empty", "dangling_link", "link_loop", "sparse_1tb"]


def _make_special(path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dangling_link":
        os.symlink(path.parent / "nowhere", path)
    elif kind == "link_loop":
        os.symlink(path, path)
    else:
        with open(path, "wb") as handle:
            handle.truncate(2**40)  # sparse: a terabyte that takes no disk


def _alarm(*_):
    raise TimeoutError("a read hung")


@FUZZ
@given(name=st.sampled_from(sorted(READ_BY)), kind=st.sampled_from(SPECIAL_KINDS))
def test_fuzz_special_files(full_folder, tmp_path, tallies, name, kind):
    """Any file replaced by a FIFO, /dev/zero, a folder, nothing, a dangling or looping link, a sparse
    terabyte: read by its reader, never a hang (an alarm fires after 20 s) or a raw exception."""
    import signal

    folder = _fresh(full_folder, tmp_path / "f")
    _make_special(folder / name, kind)
    tally = tallies.setdefault("special files", Counter())
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        contract(tally, (name,), _read_everything(folder)[READ_BY[name]])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@FUZZ
@given(name=st.sampled_from(["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "train.jsonl", "corpus.jsonl", "metrics.jsonl"]),
       depth=st.integers(1, 200_000), brackets=st.sampled_from(["[]", "{}"]), inside=st.booleans())
def test_fuzz_json_nesting(full_folder, tmp_path, tallies, name, depth, brackets, inside):
    """JSON nested to any depth, whole or under one key: parsed, or refused naming the file."""
    folder = _fresh(full_folder, tmp_path / "f")
    open_, close = brackets
    nested = (open_ + '"k": ') * depth + "1" + close * depth if open_ == "{" else open_ * depth + close * depth
    text = '{"a": ' + nested + "}" if inside else nested
    (folder / name).write_text(text if not name.endswith("jsonl") else text + "\n")
    tally = tallies.setdefault("json nesting", Counter())
    contract(tally, (name,), _read_everything(folder)[READ_BY[name]])


@FUZZ
@given(data=st.data())
def test_fuzz_tokenizer_config_values(full_folder, tmp_path, tallies, data):
    """tokenizer_config.json / special_tokens_map.json with keys set to any JSON value; loaded and called."""
    folder = _fresh(full_folder, tmp_path / "f")
    name = data.draw(st.sampled_from(["tokenizer_config.json", "special_tokens_map.json"]))
    keys = ["model_max_length", "padding_side", "truncation_side", "pad_token", "eos_token", "unk_token",
            "additional_special_tokens", "added_tokens_decoder", "model_input_names", "extra_ids",
            "clean_up_tokenization_spaces", "tokenizer_class", "add_prefix_space"]
    config = json.loads((folder / name).read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        config[data.draw(st.sampled_from(keys))] = data.draw(JSON_VALUES)
    (folder / name).write_text(json.dumps(config))
    tally = tallies.setdefault("tokenizer_config.json", Counter())
    contract(tally, (name, "tokenizer.json", "tokeniz"), _read_everything(folder)["tokenizer"])


@FUZZ
@given(header=st.one_of(st.integers(0, 2**24), st.just(0xFFFFFFF0), st.sampled_from([4, 8, 12, 16, 32])),
       body=st.binary(max_size=64))
def test_fuzz_precompiled_charsmap(full_folder, tmp_path, tallies, header, body):
    """A SentencePiece charsmap of any header and bytes in tokenizer.json: refused, or loaded and any panic
    when it is used turned into a TokenizerError (never an abort: a claimed trie beyond the bytes given is
    refused before the backend reserves it)."""
    import base64

    folder = _fresh(full_folder, tmp_path / "f")
    charsmap = struct.pack("<I", header) + body
    tree = json.loads((folder / "tokenizer.json").read_text())
    tree["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}
    (folder / "tokenizer.json").write_text(json.dumps(tree))
    tally = tallies.setdefault("precompiled_charsmap", Counter())
    contract(tally, ("tokenizer.json", "tokeniz"), _read_everything(folder)["tokenizer"])


@FUZZ
@given(data=st.data())
def test_fuzz_legacy_bpe_files(tmp_path, tallies, data):
    """vocab.json with ids of any JSON value and merges.txt with any lines: loaded and called, or refused
    naming the file."""
    folder = tmp_path / "bpe"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    vocab = {"h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "ll": 5, "hell": 6, "hello": 7}
    for _ in range(data.draw(st.integers(0, 3))):
        vocab[data.draw(st.sampled_from(sorted(vocab) + ["x"]))] = data.draw(JSON_VALUES)
    merges = ["#version: 0.2", "h e", "l l", "he ll", "hell o"]
    merges += data.draw(st.lists(st.text(max_size=8), max_size=3))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    tally = tallies.setdefault("vocab.json + merges.txt", Counter())
    tokenizer = contract(tally, ("vocab.json", "merges.txt"), lambda: AutoTokenizer.from_pretrained(str(folder)))
    if tokenizer is not None:
        contract(tally, ("tokeniz",), lambda: tokenizer(["hello", "oh"]))


RECORD_KEYS = ["text", "label", "text_pair", "tokens", "ner_tags", "source", "target"]
WORDS = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3)
TEXT = st.text(min_size=1, max_size=5).filter(str.strip)
GOOD_RECORDS = st.fixed_dictionaries({"text": TEXT, "label": st.sampled_from(["pos", "neg", 0, 1]), "tokens": WORDS,
                                      "ner_tags": WORDS, "source": TEXT, "target": TEXT})


@FUZZ
@given(task=st.sampled_from(["text-classification", "token-classification", "seq2seq"]),
       lines=st.lists(st.one_of(GOOD_RECORDS, st.dictionaries(st.sampled_from(RECORD_KEYS), JSON_VALUES, max_size=4),
                                JSON_VALUES), min_size=1, max_size=4))
def test_fuzz_fine_tuning_records(tmp_path, tallies, task, lines):
    """A JSONL data file whose lines are any JSON values (objects with any of the tasks' fields, or not):
    read and checked by the task, or refused naming the file."""
    from triformers.finetuning.tasks import TASKS

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tally = tallies.setdefault(f"data/{task}", Counter())
    records = contract(tally, ("train.jsonl",), lambda: TASKS[task].read(None, str(path)))
    if records is not None:
        assert all(isinstance(r, dict) for r in records)


@FUZZ
@given(data=st.data())
def test_fuzz_resume_files(full_folder, tmp_path, tallies, data):
    """trainer_state.pt with bytes flipped or cut, and metrics.jsonl with any lines: a TrainingError naming
    the file, or a state / log that is read (a metrics log never stops a resume)."""
    from triformers.training.checkpoints import read_state
    from triformers.training.metrics import read_metrics

    folder = _fresh(full_folder, tmp_path / "f")
    state = bytearray((folder / "trainer_state.pt").read_bytes())
    if data.draw(st.booleans()):
        state = state[: data.draw(st.integers(0, len(state) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            state[data.draw(st.integers(0, len(state) - 1))] = data.draw(st.integers(0, 255))
    (folder / "trainer_state.pt").write_bytes(bytes(state))
    lines = data.draw(st.lists(st.one_of(st.text(max_size=30), st.builds(json.dumps, JSON_VALUES)), max_size=5))
    (folder / "metrics.jsonl").write_text("\n".join(lines))
    tally = tallies.setdefault("resume files", Counter())
    contract(tally, ("trainer_state.pt",), lambda: read_state(folder / "trainer_state.pt"))
    assert all(type(r["step"]) is int for r in read_metrics(folder / "metrics.jsonl"))


@FUZZ
@given(ref=st.one_of(st.text(max_size=50), st.sampled_from(["../../..", "/etc", "a" * 40, "0" * 40 + "/.."])),
       revision=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["..", "../x", "/abs", "refs/pr/1"])))
def test_fuzz_cache_names(tmp_path, tallies, monkeypatch, ref, revision):
    """A `refs/` file and a `revision` of any text: a folder inside the cache's snapshots, or refused."""
    from triformers.errors import ModelNotFoundError
    from triformers.io.hub import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--org--name"
    shutil.rmtree(tmp_path / "hub", ignore_errors=True)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "refs" / "pr").mkdir(parents=True)
    for name in ("main", "pr/1"):
        (repo / "refs" / name).write_text(ref)
    tally = tallies.setdefault("refs and revisions", Counter())
    try:
        found = resolve("org/name", revision=revision, cache_dir=tmp_path / "hub")
    except ModelNotFoundError:
        tally["ModelNotFoundError"] += 1
        return
    tally["result"] += 1
    assert found.resolve().parent == (repo / "snapshots").resolve()
