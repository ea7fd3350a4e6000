"""Saving, training, errors and the smaller API surface of triformers tokenizers.

Saved and trained folders are loaded by transformers' AutoTokenizer (the oracle) and must give
identical ids, masks and offsets on botchan.txt plus edge cases.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings

import pytest
import torch

from conftest import asset
from triformers.errors import TokenizerError
from triformers.tokenization import AutoTokenizer, BatchEncoding, Tokenizer, train_tokenizer

transformers = pytest.importorskip("transformers")
HFAuto = transformers.AutoTokenizer

EDGE = [
    "",
    "  x  ",
    "tab\tnew\nline",
    "Café naïve",
    "😀 🎉",
    "中文测试",
    "שלום",
    "ctrl\x00\x1b",
    "<extra_id_0> [MASK] </s>",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return asset("spm-tokenizer/botchan.txt").read_text(encoding="utf-8").splitlines() + EDGE


def _same(ours: Tokenizer, hf, texts: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours(texts, texts[::-1], return_offsets_mapping=True)
        want = hf(texts, texts[::-1], return_offsets_mapping=True)
    assert list(got) == list(want)
    for key in want:
        a = [[tuple(o) for o in r] for r in got[key]] if key == "offset_mapping" else got[key]
        b = [[tuple(o) for o in r] for r in want[key]] if key == "offset_mapping" else want[key]
        assert a == b, key
    assert ours.all_special_ids == hf.all_special_ids and len(ours) == len(hf)
    assert ours.batch_decode(want["input_ids"]) == hf.batch_decode(want["input_ids"])


@pytest.fixture(scope="module")
def trained(texts) -> dict[str, Tokenizer]:
    corpus = str(asset("spm-tokenizer/botchan.txt"))
    return {
        "wordpiece": train_tokenizer(corpus, kind="wordpiece", vocab_size=1000),
        "bpe": train_tokenizer(corpus, kind="bpe", vocab_size=1000),
        "unigram": train_tokenizer(iter(texts[:3000]), kind="unigram", vocab_size=800),
    }


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_trained_tokenizer_saves_and_loads_in_transformers(trained, texts, tmp_path, kind):
    tok = trained[kind]
    tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]  # no temp files left
    hf = HFAuto.from_pretrained(str(tmp_path))
    _same(tok, hf, texts)
    _same(AutoTokenizer.from_pretrained(tmp_path), hf, texts)


def test_trained_special_token_layouts(trained):
    bert, gpt2, t5 = trained["wordpiece"], trained["bpe"], trained["unigram"]
    assert [bert.convert_tokens_to_ids(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]] == [0, 1, 2, 3, 4]
    assert bert("a b", "c")["token_type_ids"][-2:] == [1, 1] and bert("hello")["input_ids"][0] == bert.cls_token_id
    assert bert.tokenize("HELLO") == bert.tokenize("hello")  # wordpiece lower-cases by default
    assert gpt2.bos_token == gpt2.eos_token == gpt2.unk_token == "<|endoftext|>" and gpt2.pad_token is None
    assert gpt2("hello")["input_ids"] == gpt2.encode("hello") and gpt2.eos_token_id not in gpt2.encode("hello")
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert t5("hello")["input_ids"][-1] == 1
    assert t5.sentinel_ids == list(range(len(t5) - 1, len(t5) - 101, -1))  # <extra_id_0> is the last id
    assert t5.extra_id(0) == len(t5) - 1 and t5.extra_id(99) == len(t5) - 100
    assert bert.sentinel_ids == [] and gpt2.sentinel_ids == []
    with pytest.raises(TokenizerError, match="extra_id_0"):
        bert.extra_id(0)


def test_train_options_and_errors(tmp_path):
    lines = ["Hello World", "hello again", "World of words"] * 50
    cased = train_tokenizer(lines, kind="wordpiece", vocab_size=200, lowercase=False)
    assert cased.tokenize("Hello") != cased.tokenize("hello")
    cased.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert HFAuto.from_pretrained(str(tmp_path)).tokenize("Hello") == cased.tokenize("Hello")
    with pytest.raises(TokenizerError, match="kind"):
        train_tokenizer(lines, kind="sentencepiece")
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_tokenizer(lines, vocab_size=0)
    with pytest.raises(TokenizerError, match="no texts"):
        train_tokenizer([])


TRAIN_AND_PRINT = """
import json, sys
from triformers.tokenization import train_tokenizer
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
for kind, size in (("wordpiece", 600), ("unigram", 500)):
    print(kind, train_tokenizer(lines, kind=kind, vocab_size=size).backend.to_str())
"""


def test_training_gives_the_same_vocabulary_in_every_process(tmp_path):
    # The trainers count words in hash maps seeded per process: without the fixed ordering, WordPiece's
    # ## ids and tied merges, and Unigram's tied pieces, change from one process to the next.
    import subprocess
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(asset("spm-tokenizer/botchan.txt").read_text(encoding="utf-8").splitlines()[:1500]))
    runs = [subprocess.run([sys.executable, "-c", TRAIN_AND_PRINT, str(corpus)], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    first = dict(line.split(" ", 1) for line in runs[0].splitlines())
    wordpiece = json.loads(first["wordpiece"])
    vocab = sorted(wordpiece["model"]["vocab"], key=wordpiece["model"]["vocab"].get)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocab) == 600
    singles = [i for i, t in enumerate(vocab) if len(t) == 1]
    continuing = [i for i, t in enumerate(vocab) if t.startswith("##") and len(t) == 3]
    assert singles == list(range(5, 5 + len(singles))) and continuing[0] == 5 + len(singles)  # the usual order
    assert [t["content"] for t in wordpiece["added_tokens"]] == vocab[:5]


@pytest.mark.parametrize("source", ["gpt2-tokenizer", "roberta", "bert-legacy", "spm"])
def test_converted_folder_saves_for_transformers(texts, tmp_path, source):
    src = tmp_path / "src"
    src.mkdir()
    if source in ("gpt2-tokenizer", "roberta"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(asset(f"gpt2-tokenizer/{name}"), src / name)
        config = {"tokenizer_class": "RobertaTokenizer" if source == "roberta" else "GPT2Tokenizer"}
    elif source == "bert-legacy":
        shutil.copy(asset("all-MiniLM-L6-v2/vocab.txt"), src / "vocab.txt")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}
    else:
        shutil.copy(asset("spm-tokenizer/botchan_en_unigram_1000.model"), src / "spiece.model")
        config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 100}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    ours = AutoTokenizer.from_pretrained(src)
    ours.save_pretrained(tmp_path / "out")
    hf = HFAuto.from_pretrained(str(tmp_path / "out"))
    sample = texts[:1500] + EDGE
    if source == "spm":  # skip texts with characters the botchan .model lacks: transformers maps them to </s>
        sample = [t for t in sample if ours.unk_token_id not in ours.encode(t)]
        assert len(sample) > 1000
    _same(ours, hf, sample)


def test_missing_malformed_and_unknown_files_raise(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        AutoTokenizer.from_pretrained(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"model": {"type": "WordPiece", "vocab": ')
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(bad)
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(asset("antiberty/vocab.txt"), odd / "vocab.txt")
    (odd / "tokenizer_config.json").write_text('{"tokenizer_class": "MadeUpTokenizer"}')
    with pytest.raises(TokenizerError, match="tokenizer_config.json.*MadeUpTokenizer"):
        AutoTokenizer.from_pretrained(odd)
    (odd / "tokenizer_config.json").write_text('{"tokenizer_class": ')
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        AutoTokenizer.from_pretrained(odd)
    (odd / "tokenizer_config.json").write_text('{"tokenizer_class": "T5Tokenizer"}')
    with pytest.raises(TokenizerError, match="vocab.txt"):
        AutoTokenizer.from_pretrained(odd)
    spm = tmp_path / "spm"
    spm.mkdir()
    (spm / "spiece.model").write_bytes(b"\xff\x00not a proto")
    with pytest.raises(TokenizerError, match="spiece.model"):
        AutoTokenizer.from_pretrained(spm)


def test_spm_without_sentencepiece_says_what_to_install(tmp_path, monkeypatch):
    folder = tmp_path / "t5"
    folder.mkdir()
    shutil.copy(asset("spm-tokenizer/spiece.model"), folder / "spiece.model")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(TokenizerError, match="pip install sentencepiece"):
        AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bert() -> Tokenizer:
    return AutoTokenizer.from_pretrained(asset("all-MiniLM-L6-v2"))


@pytest.mark.parametrize("max_length", [0, -3, 2.5, "8", True])
def test_bad_max_length_is_an_error(bert, max_length):
    with pytest.raises(TokenizerError, match="max_length"):
        bert("some text", truncation=True, max_length=max_length)


def test_bad_arguments_are_errors(bert):
    with pytest.raises(TokenizerError, match="padding"):
        bert("x", padding="sideways")
    with pytest.raises(TokenizerError, match="truncation"):
        bert("x", truncation="middle")
    with pytest.raises(TokenizerError, match="padding_side"):
        bert(["x", "y z"], padding=True, padding_side="up")
    with pytest.raises(TokenizerError, match="padding=True"):
        bert(["x", "y z w"], return_tensors="pt")
    with pytest.raises(TokenizerError, match="string"):
        bert(123)


def test_overlong_input_only_warns(bert):
    with pytest.warns(UserWarning, match=r"\(602 > 512\)"):
        ids = bert("word " * 600)["input_ids"]
    assert len(ids) == 602
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(bert("word " * 600, truncation=True)["input_ids"]) == 512


def test_batch_encoding_goes_into_a_model(bert):
    batch = bert(["a short one", "and a somewhat longer text here"], padding=True, return_tensors="pt")
    assert isinstance(batch, BatchEncoding) and batch.input_ids is batch["input_ids"]
    assert batch.to("cpu") is batch and batch["attention_mask"].dtype == torch.long

    def model(input_ids, token_type_ids, attention_mask):
        return input_ids.shape, attention_mask.sum(1).tolist()

    assert model(**batch) == (torch.Size([2, 8]), [5, 8])
    assert batch.word_ids(0) == [None, 0, 1, 2, None, None, None, None]
    assert batch.tokens(0)[:2] == ["[CLS]", "a"] and batch.sequence_ids(1)[1] == 0
    with pytest.raises(AttributeError, match="no field"):
        _ = batch.labels
    left = bert(["a", "b c"], padding=True, padding_side="left")
    assert left["input_ids"][0][0] == bert.pad_token_id


def test_added_tokens_and_setters_match_transformers(tmp_path):
    folder = asset("gpt2-tokenizer")
    ours, hf = AutoTokenizer.from_pretrained(folder), HFAuto.from_pretrained(str(folder))
    for tok in (ours, hf):
        assert tok.add_tokens(["newword", "<tag>"]) == 2
        assert tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<sep2>"]}) == 2
    texts = ["a newword <tag> b <pad> c<sep2>d", "newwords are <tag>s"]
    _same(ours, hf, texts)
    assert (ours.pad_token, ours.pad_token_id) == (hf.pad_token, hf.pad_token_id) == ("<pad>", 50259)
    assert ours(texts, padding=True)["input_ids"] == hf(texts, padding=True)["input_ids"]
    ours.save_pretrained(tmp_path)
    _same(AutoTokenizer.from_pretrained(tmp_path), HFAuto.from_pretrained(str(tmp_path)), texts)
    ours.pad_token_id = 50256
    assert ours.pad_token == "<|endoftext|>"
    with pytest.raises(TokenizerError, match="no such id"):
        ours.pad_token_id = 10**9


def test_overrides_and_padding_side(tmp_path):
    tok = AutoTokenizer.from_pretrained(
        asset("gpt2-tokenizer"), padding_side="left", pad_token="<|endoftext|>", model_max_length=64
    )
    assert (tok.padding_side, tok.pad_token_id, tok.model_max_length) == ("left", 50256, 64)
    assert tok(["hi", "hello there friend"], padding=True)["attention_mask"][0][:2] == [0, 0]
    tok.save_pretrained(tmp_path)
    hf = HFAuto.from_pretrained(str(tmp_path))
    assert (hf.padding_side, hf.pad_token, hf.model_max_length) == ("left", "<|endoftext|>", 64)
    with pytest.raises(TypeError):
        AutoTokenizer()
