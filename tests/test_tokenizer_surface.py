"""The tokenizer calls training and inference code makes besides encoding: `pad`, `text_target=`, overflowing
windows (the QA preprocessing), `tokenize` and the token/id conversions, `clean_up_tokenization_spaces`, and
`AutoTokenizer.from_pretrained`'s keywords, each against transformers' AutoTokenizer (the oracle) on the same real
tokenizer files (GPT-2 vocab.json + merges.txt, BERT vocab.txt and tokenizer.json, T5 spiece.model). Exact equality.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from conftest import asset
from tokenizers.models import Unigram

from triformers.errors import TokenizerError
from triformers.tokenization import AutoTokenizer

transformers = pytest.importorskip("transformers")
HFAuto = transformers.AutoTokenizer
CASES = ["gpt2", "bert-legacy", "bert-json", "t5"]


def _folder(tmp, case: str):
    if case == "gpt2":
        folder = tmp / case
        folder.mkdir()
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(asset(f"gpt2-tokenizer/{name}"), folder / name)
        return folder
    if case == "bert-json":
        return asset("all-MiniLM-L6-v2")
    if case == "bert-legacy":
        folder = tmp / case
        folder.mkdir()
        for name in ("vocab.txt", "tokenizer_config.json"):
            shutil.copy(asset(f"all-MiniLM-L6-v2/{name}"), folder / name)
        return folder
    folder = tmp / case
    folder.mkdir()
    shutil.copy(asset("spm-tokenizer/spiece.model"), folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 100,
                                                              "model_max_length": 512}))
    return folder


def _t5_oracle(hf):
    """transformers' T5Tokenizer hard-codes unk_id=2; this .model has <unk> at 0 (see test_tokenization.py)."""
    state = json.loads(hf.backend_tokenizer.to_str())["model"]
    hf.backend_tokenizer.model = Unigram([tuple(v) for v in state["vocab"]], unk_id=0, byte_fallback=False)
    return hf


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    cache, tmp = {}, tmp_path_factory.mktemp("surface")

    def get(case: str):
        if case not in cache:
            folder = _folder(tmp, case)
            ours, hf = AutoTokenizer.from_pretrained(folder), HFAuto.from_pretrained(str(folder))
            if case == "t5":
                hf = _t5_oracle(hf)
            if ours.pad_token is None:  # GPT-2: the usual idiom
                ours.pad_token, hf.pad_token = ours.eos_token, hf.eos_token
            cache[case] = (folder, ours, hf)
        return cache[case]

    return get


@pytest.fixture(scope="module")
def lines() -> list[str]:
    text = asset("spm-tokenizer/botchan.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in text if len(line) > 30][:300]


def _plain(value):
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return ("tensor" if isinstance(value, torch.Tensor) else "array", value.tolist())
    if isinstance(value, Mapping):  # transformers 5's BatchEncoding is a UserDict
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("case", CASES)
def test_pad_matches(loaded, lines, case):
    _, ours, hf = loaded(case)
    rows = [dict(ours(line, return_special_tokens_mask=True)) for line in lines[:12]]
    for row, label in zip(rows, range(12), strict=True):
        row["labels"] = list(range(label + 1))  # not padded: passes through as it is
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    for kwargs in (dict(), dict(padding="max_length", max_length=80), dict(padding=True, pad_to_multiple_of=16),
                   dict(padding="longest", padding_side="left", return_attention_mask=False),
                   dict(padding=False), dict(padding="max_length", max_length=20)):  # some rows longer than 20
        for inputs in (rows, columns, rows[3]):
            assert _plain(ours.pad(inputs, **kwargs)) == _plain(hf.pad(inputs, **kwargs)), kwargs
    no_labels = [{k: v for k, v in row.items() if k != "labels"} for row in rows]
    for kwargs in (dict(return_tensors="pt"), dict(return_tensors="np", padding="max_length", max_length=96)):
        assert _plain(ours.pad(no_labels, **kwargs)) == _plain(hf.pad(no_labels, **kwargs))
    tensors = [{k: torch.tensor(v) for k, v in row.items()} for row in no_labels]  # tensors in: tensors out
    assert _plain(ours.pad(tensors)) == _plain(hf.pad(tensors))
    with pytest.raises(TokenizerError, match="no 'input_ids'"):
        ours.pad({"labels": [[1]]})


@pytest.mark.parametrize("case", CASES)
def test_text_target_gives_labels_as_transformers(loaded, lines, case):
    _, ours, hf = loaded(case)
    sources, targets = lines[:40], [line[:25] for line in lines[40:80]]
    for kwargs in (dict(max_length=32, truncation=True), dict(), dict(padding=True, return_tensors="pt"),
                   dict(max_length=24, truncation=True, max_target_length=8)):
        got = _quiet(ours, sources, text_target=targets, **kwargs)
        want = _quiet(hf, sources, text_target=targets, **kwargs)
        assert _plain(got) == _plain(want) and "labels" in got, kwargs
        assert _plain(_quiet(ours, text_target=targets, **kwargs)) == _plain(_quiet(hf, text_target=targets, **kwargs))
    pairs = dict(text=sources[:5], text_pair=sources[5:10], text_target=targets[:5], text_pair_target=targets[5:10])
    assert _plain(ours(**pairs)) == _plain(hf(**pairs))
    assert _plain(ours(sources[0], text_target=targets[0])) == _plain(hf(sources[0], text_target=targets[0]))
    with pytest.raises(TokenizerError, match="give `text` or `text_target`"):
        ours()


QUESTIONS = ["What did the narrator do as a boy?", "Who is the landlady?", "Where is the school?"]


@pytest.mark.parametrize("case", ["bert-legacy", "bert-json", "gpt2", "t5"])
def test_overflowing_windows_for_qa_match(loaded, lines, case):
    """transformers' extractive-QA preprocessing: question + long context, windows of max_length with stride."""
    _, ours, hf = loaded(case)
    contexts = [" ".join(lines[i:i + 6]) for i in (0, 10, 20)]
    kwargs = dict(max_length=64, truncation="only_second", stride=16, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="max_length")
    got, want = ours(QUESTIONS, contexts, **kwargs), hf(QUESTIONS, contexts, **kwargs)
    assert _plain(got) == _plain(want)
    assert len(got["input_ids"]) > len(QUESTIONS) and got["overflow_to_sample_mapping"] == \
        want["overflow_to_sample_mapping"]
    assert [got.sequence_ids(i) for i in range(len(got["input_ids"]))] == \
        [want.sequence_ids(i) for i in range(len(want["input_ids"]))]
    tensors = ours(QUESTIONS, contexts, return_tensors="pt", **kwargs)
    assert tensors["input_ids"].shape == (len(got["input_ids"]), 64) and \
        tensors["overflow_to_sample_mapping"].tolist() == got["overflow_to_sample_mapping"]
    single = dict(max_length=24, truncation=True, stride=4, return_overflowing_tokens=True)
    assert _plain(ours(contexts[0], **single)) == _plain(hf(contexts[0], **single))  # stays batched
    assert _plain(ours(contexts, **single)) == _plain(hf(contexts, **single))


@pytest.mark.parametrize("case", CASES)
def test_tokens_and_ids_conversions_match(loaded, lines, case):
    _, ours, hf = loaded(case)
    for text in lines[:100] + ["Hello, world!  Café 😀 <|endoftext|> [SEP] </s>", ""]:
        tokens = ours.tokenize(text)
        assert tokens == hf.tokenize(text)
        assert ours.tokenize(text, add_special_tokens=True) == hf.tokenize(text, add_special_tokens=True)
        ids = ours.convert_tokens_to_ids(tokens)
        assert ids == hf.convert_tokens_to_ids(tokens)
        assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert ours.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens)
    assert ours.convert_tokens_to_ids("no-such-token-at-all") == hf.convert_tokens_to_ids("no-such-token-at-all")
    special = ours.all_special_ids[:1] + ours.encode("plain words", add_special_tokens=False)
    assert ours.convert_ids_to_tokens(special, skip_special_tokens=True) == \
        hf.convert_ids_to_tokens(special, skip_special_tokens=True)
    assert ours.tokenize(lines[0], lines[1]) == hf.tokenize(lines[0], lines[1])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("clean_up", [True, False])
def test_clean_up_tokenization_spaces_is_read_from_the_config(loaded, tmp_path, case, clean_up):
    source, _, _ = loaded(case)
    folder = tmp_path / case
    shutil.copytree(source, folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    config_file.write_text(json.dumps({**config, "clean_up_tokenization_spaces": clean_up}))
    ours, hf = AutoTokenizer.from_pretrained(folder), HFAuto.from_pretrained(str(folder))
    assert ours.clean_up_tokenization_spaces == hf.clean_up_tokenization_spaces == clean_up
    texts = ["Hello , world ! It 's a test . Don 't , won 't", "a ( b ) c ? d ! e . f"]
    ids = [hf(text)["input_ids"] for text in texts]
    assert ours.batch_decode(ids) == hf.batch_decode(ids)
    assert [ours.decode(i, clean_up_tokenization_spaces=not clean_up) for i in ids] == \
        [hf.decode(i, clean_up_tokenization_spaces=not clean_up) for i in ids]


def test_from_pretrained_keywords_are_used_and_loading_options_not_saved(loaded, tmp_path, caplog):
    folder, _, _ = loaded("gpt2")
    kwargs = dict(padding_side="left", truncation_side="left", model_max_length=77, legacy=False,
                  add_prefix_space=True)
    options = dict(cache_dir=str(tmp_path / "cache"), revision="main", local_files_only=True, token=None,
                   trust_remote_code=False)
    with caplog.at_level(logging.WARNING, logger="triformers"):
        ours = AutoTokenizer.from_pretrained(folder, use_fast=False, **kwargs, **options)
    assert "use_fast=False is ignored" in caplog.text
    hf = HFAuto.from_pretrained(str(folder), **kwargs, **options)
    for attribute in ("padding_side", "truncation_side", "model_max_length"):
        assert getattr(ours, attribute) == getattr(hf, attribute) == kwargs[attribute]
    texts = ["hello world", "Hello there, friend"]
    ours.pad_token, hf.pad_token = ours.eos_token, hf.eos_token
    assert _plain(ours(texts, padding=True)) == _plain(hf(texts, padding=True))  # prefix space, left padding
    ours.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert not set(saved) & {"cache_dir", "revision", "local_files_only", "token", "trust_remote_code", "use_fast",
                             "subfolder"}
    assert saved["padding_side"] == "left" and saved["model_max_length"] == 77 and saved["legacy"] is False
    again = HFAuto.from_pretrained(str(tmp_path / "saved"))
    assert _plain(again(texts)) == _plain(hf(texts))
    nested = tmp_path / "repo"
    shutil.copytree(folder, nested / "tokenizer")
    sub = AutoTokenizer.from_pretrained(nested, subfolder="tokenizer")
    assert sub("hello")["input_ids"] == HFAuto.from_pretrained(str(nested), subfolder="tokenizer")("hello")["input_ids"]
    for bad in ("../x", "/etc", "missing"):
        with pytest.raises(TokenizerError, match="subfolder"):
            AutoTokenizer.from_pretrained(nested, subfolder=bad)


def test_unknown_keywords_are_errors_naming_them(loaded):
    folder, ours, _ = loaded("bert-json")
    with pytest.raises(TokenizerError, match=r"unknown keyword argument\(s\) paddding"):
        AutoTokenizer.from_pretrained(folder, paddding="left")
    with pytest.raises(TokenizerError, match="trust_remote_code=True is refused"):
        AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    with pytest.raises(TokenizerError, match=r"unknown keyword argument\(s\) return_offset_mapping"):
        ours("hello", return_offset_mapping=True)
    with pytest.raises(TokenizerError, match="unknown keyword"):
        ours("hello", tokenizer_kwargs={"max_lenght": 3})
    assert AutoTokenizer.from_pretrained(folder, do_lower_case=True)("HELLO")["input_ids"] == \
        ours("hello")["input_ids"]  # a key of the folder's own tokenizer_config.json is an override


@pytest.mark.parametrize("case", ["gpt2", "bert-json"])
def test_split_special_tokens_matches(loaded, case):
    _, ours, hf = loaded(case)
    text = f"one {ours.all_special_tokens[0]} two"
    for split in (False, True):
        assert ours(text, split_special_tokens=split)["input_ids"] == hf(text, split_special_tokens=split)["input_ids"]
    assert ours(text)["input_ids"] == hf(text)["input_ids"]  # and the backend is back to normal


def test_family_flags_given_to_from_pretrained_rebuild_a_tokenizer_json_as_transformers(loaded, lines, tmp_path):
    """transformers rebuilds a family's pipeline from its flags, tokenizer.json or not: the keywords win."""
    _, gpt2, _ = loaded("gpt2")
    gpt2.save_pretrained(tmp_path / "gpt2-json")  # tokenizer.json + GPT2Tokenizer
    cases = [(tmp_path / "gpt2-json", dict(add_prefix_space=True)), (tmp_path / "gpt2-json", dict()),
             (asset("all-MiniLM-L6-v2"), dict(do_lower_case=False)),
             (asset("all-MiniLM-L6-v2"), dict(strip_accents=True, tokenize_chinese_chars=False))]
    texts = lines[:50] + ["Hello Café naïve 中文字符", "  leading space"]
    for folder, kwargs in cases:
        ours, hf = AutoTokenizer.from_pretrained(folder, **kwargs), HFAuto.from_pretrained(str(folder), **kwargs)
        assert ours(texts)["input_ids"] == hf(texts)["input_ids"], kwargs
