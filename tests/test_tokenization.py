"""Parity of triformers tokenizers with transformers' AutoTokenizer (the oracle) on the same files.

Each case is a tokenizer folder; both libraries load it once per module. Comparisons are exact
(ids, masks, token types, offsets, decoded text) over botchan.txt (4,288 lines) plus edge cases.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers.models import Unigram

from conftest import asset
from triformers.errors import TokenizerError
from triformers.tokenization import AutoTokenizer, BatchEncoding

transformers = pytest.importorskip("transformers")
HFAuto = transformers.AutoTokenizer

EDGE_CASES = [
    "",
    " ",
    "   leading and trailing   ",
    "whitespace\u3000runs\u00a0\u2003here",
    "tabs\tand\nnewlines\r\n\n",
    "Café naïve façade résumé Ångström",
    "e\u0301 composed vs é",
    "emoji 😀🎉👩‍👩‍👧 🇯🇵 mixed",
    "中文字符和标点，测试。",
    "日本語のテキスト",
    "한국어 문장",
    "שלום עולם, מה שלומך?",
    "مرحبا بالعالم",
    "ctrl\x00\x01\x07\x1b\x7f chars",
    "zero\u200bwidth\u200djoiner",
    "don't can't won't it's",
    "URLs: https://example.com/a?b=c&d=e#f",
    "numbers 3.14159 1,000,000 -42 1e10",
    "ALL CAPS and MiXeD CaSe",
    "special [MASK] [SEP] <mask> </s> <|endoftext|>",
    "sentinel <extra_id_0> and <extra_id_99>",
    "word " * 700,
    "x" * 5000,
    "long " + "supercalifragilistic" * 40,
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lines = asset("spm-tokenizer/botchan.txt").read_text(encoding="utf-8").splitlines()
    return lines + EDGE_CASES


def _folder(tmp, name: str, files: dict[str, str], config: dict | None = None):
    folder = tmp / name
    folder.mkdir()
    for target, source in files.items():
        shutil.copy(asset(source), folder / target)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _t5_oracle(hf, folder):
    """transformers' T5Tokenizer hard-codes unk_id=2; a non-T5 .model has <unk> at 0 (see test below)."""
    state = json.loads(hf.backend_tokenizer.to_str())["model"]
    hf.backend_tokenizer.model = Unigram([tuple(v) for v in state["vocab"]], unk_id=0, byte_fallback=False)
    return hf


CASES = ["gpt2", "roberta", "bert-legacy", "bert-json", "antiberty", "t5-unigram", "t5-bpe"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """case -> (folder, ours, oracle), built lazily once per module."""
    cache: dict = {}
    tmp = tmp_path_factory.mktemp("tok")

    def get(case: str):
        if case in cache:
            return cache[case]
        t5 = {"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "model_max_length": 512}
        if case == "gpt2":
            folder = asset("gpt2-tokenizer")
        elif case == "roberta":
            folder = _folder(
                tmp,
                case,
                {"vocab.json": "gpt2-tokenizer/vocab.json", "merges.txt": "gpt2-tokenizer/merges.txt"},
                {"tokenizer_class": "RobertaTokenizer"},
            )
        elif case == "bert-legacy":
            folder = _folder(
                tmp,
                case,
                {
                    "vocab.txt": "all-MiniLM-L6-v2/vocab.txt",
                    "tokenizer_config.json": "all-MiniLM-L6-v2/tokenizer_config.json",
                },
            )
        elif case == "bert-json":
            folder = asset("all-MiniLM-L6-v2")
        elif case == "antiberty":
            folder = asset("antiberty")
        else:
            kind = case.split("-")[1]
            folder = _folder(tmp, case, {"spiece.model": f"spm-tokenizer/botchan_en_{kind}_1000.model"}, t5)
        hf = HFAuto.from_pretrained(str(folder))
        if case.startswith("t5"):
            hf = _t5_oracle(hf, folder)
        cache[case] = (folder, AutoTokenizer.from_pretrained(str(folder)), hf)
        return cache[case]

    return get


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _plain(batch) -> dict:
    """A BatchEncoding of either library as plain lists (offsets as tuples)."""
    out = {}
    for key, value in batch.items():
        value = value.tolist() if isinstance(value, torch.Tensor) else value
        if key == "offset_mapping":
            unbatched = bool(value) and isinstance(value[0][0], int) if value and value[0] else False
            value = [tuple(o) for o in value] if unbatched else [[tuple(o) for o in row] for row in value]
        out[key] = value
    return out


@pytest.mark.parametrize("case", CASES)
def test_batch_ids_masks_offsets_match(loaded, texts, case):
    _, ours, hf = loaded(case)
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    got, want = _plain(_quiet(ours, texts, **kwargs)), _plain(_quiet(hf, texts, **kwargs))
    assert list(got) == list(want)
    for key in want:
        mismatched = [i for i, (a, b) in enumerate(zip(got[key], want[key], strict=True)) if a != b]
        assert not mismatched, f"{case} {key}: {len(mismatched)} of {len(texts)} differ, first {texts[mismatched[0]]!r}"
    assert len(got["input_ids"]) == len(texts) > 4000


@pytest.mark.parametrize("case", CASES)
def test_pairs_with_token_types_match(loaded, texts, case):
    _, ours, hf = loaded(case)
    firsts, seconds = texts[:2000], texts[-2000:]
    kwargs = dict(return_token_type_ids=True, return_offsets_mapping=True)
    assert _plain(_quiet(ours, firsts, seconds, **kwargs)) == _plain(_quiet(hf, firsts, seconds, **kwargs))
    assert _plain(ours(texts[100], texts[200])) == _plain(hf(texts[100], texts[200]))  # unbatched pair


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "options",
    [
        dict(padding=True, truncation=True, max_length=64),
        dict(padding="max_length", truncation="longest_first", max_length=48, padding_side="left"),
        dict(padding="longest", truncation="only_first", max_length=40, pair="long-short"),
        dict(padding=True, truncation="only_second", max_length=40, pair="short-long", pad_to_multiple_of=8),
        dict(padding=True, truncation="longest_first", max_length=40, pair="long-long"),
        dict(max_length=16),  # max_length alone turns truncation on (transformers' rule)
        dict(padding=True, truncation=True),  # max_length from model_max_length
    ],
)
def test_padding_truncation_tensors_match(loaded, texts, case, options):
    _, ours, hf = loaded(case)
    if ours.pad_token is None:  # GPT-2 has no pad token: the usual idiom
        ours.pad_token, hf.pad_token = ours.eos_token, hf.eos_token
    options = dict(options)
    long = [t for t in texts[:800] if len(t) > 40] + EDGE_CASES[-3:]  # only_* truncation needs room
    short = [t[:6] for t in long]
    pair = options.pop("pair", None)
    args = {
        "long-short": (long, short),
        "short-long": (short, long),
        "long-long": (long, long[::-1]),
        None: (long + EDGE_CASES,),
    }[pair]
    tensors = "pt" if options.get("padding") else None  # unpadded rows are ragged: lists only
    got = _quiet(ours, *args, return_tensors=tensors, **options)
    want = _quiet(hf, *args, return_tensors=tensors, **options)
    assert isinstance(got, BatchEncoding) and isinstance(got["input_ids"], torch.Tensor) == (tensors == "pt")
    assert _plain(got) == _plain(want)
    assert [got.word_ids(i) for i in range(5)] == [want.word_ids(i) for i in range(5)]


@pytest.mark.parametrize("case", CASES)
def test_decode_matches(loaded, texts, case):
    _, ours, hf = loaded(case)
    ids = _quiet(hf, texts)["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
    assert ours.decode(ids[7]) == hf.decode(ids[7])
    assert ours.decode(torch.tensor(ids[7]), skip_special_tokens=True) == hf.decode(ids[7], skip_special_tokens=True)
    assert ours.decode(ids[7], clean_up_tokenization_spaces=True) == hf.decode(
        ids[7], clean_up_tokenization_spaces=True
    )


@pytest.mark.parametrize("case", CASES)
def test_vocabulary_and_special_tokens_match(loaded, case):
    _, ours, hf = loaded(case)
    assert ours.get_vocab() == hf.get_vocab()
    assert (len(ours), ours.vocab_size, ours.model_max_length) == (len(hf), hf.vocab_size, hf.model_max_length)
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.all_special_ids == hf.all_special_ids
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(hf, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(hf, f"{name}_token_id"), name
    assert ours.padding_side == hf.padding_side == "right"
    assert ours.clean_up_tokenization_spaces == hf.clean_up_tokenization_spaces
    sample = ["hello", "world", "[MASK]", "</s>", "not-a-token-xyz"]
    assert ours.convert_tokens_to_ids(sample) == hf.convert_tokens_to_ids(sample)
    assert ours.convert_ids_to_tokens([0, 1, 5, 17]) == hf.convert_ids_to_tokens([0, 1, 5, 17])
    assert ours.tokenize("Hello there, world!") == hf.tokenize("Hello there, world!")


@pytest.mark.parametrize("case", CASES)
def test_random_unicode_matches(loaded, case):
    _, ours, hf = loaded(case)

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.text(max_size=60), st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
    def check(text, pair):
        assert _plain(ours(text, pair, return_offsets_mapping=True)) == _plain(
            hf(text, pair, return_offsets_mapping=True)
        )
        assert _plain(ours([text])) == _plain(hf([text]))
        ids = hf.encode(text)
        assert ours.decode(ids) == hf.decode(ids)

    check()


def test_minilm_legacy_vocab_and_tokenizer_json_agree(loaded, texts):
    _, legacy, _ = loaded("bert-legacy")
    _, from_json, _ = loaded("bert-json")
    assert _quiet(legacy, texts, texts[::-1]) == _quiet(from_json, texts, texts[::-1])
    assert legacy(["x"] * 3, padding=True)["input_ids"] == [[101, 1060, 102]] * 3  # file padding/truncation off


def test_transformers_t5_unknown_piece_becomes_eos(loaded):
    """Documented difference: transformers maps unknown characters of a non-T5 .model to id 2 (</s>)."""
    folder, ours, _ = loaded("t5-unigram")
    raw = HFAuto.from_pretrained(str(folder))
    assert raw("😀")["input_ids"] == [4, 2, 2]  # "▁", "😀" -> 2 (wrong: it is </s>), "</s>"
    assert ours("😀")["input_ids"] == [4, ours.unk_token_id, ours.eos_token_id] == [4, 0, 2]


def test_impossible_truncation_is_a_clear_error(loaded):
    _, ours, hf = loaded("bert-legacy")
    with pytest.raises(Exception, match="Truncation error"):  # noqa: B017 - the oracle raises a bare Exception
        hf("a b c d e f g h", "x", truncation="only_second", max_length=5)
    with pytest.raises(TokenizerError, match="Truncation error"):
        ours("a b c d e f g h", "x", truncation="only_second", max_length=5)


@pytest.mark.parametrize("source", ["gpt2", "trained"])
def test_concurrent_calls_with_different_settings_get_their_own(source, tmp_path):
    """Padding and truncation are the backend's state for the length of a call: threads that ask for
    different settings at once each get exactly what a lone call gets (and no "Already borrowed")."""
    import concurrent.futures

    from triformers.tokenization import train_tokenizer

    if source == "gpt2":
        tokenizer = AutoTokenizer.from_pretrained(str(asset("gpt2-tokenizer")))
    else:
        tokenizer = train_tokenizer(["hello world", "a much longer sentence than that"] * 5, kind="bpe",
                                    vocab_size=80, model_max_length=16)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    texts = ["hello world", "a much longer sentence that goes on and on for a while"]
    settings = [dict(padding="max_length", max_length=20), dict(), dict(padding=True, truncation=True, max_length=4),
                dict(padding=True, padding_side="left")]
    expected = [tokenizer(texts, **s) for s in settings]
    decoded = tokenizer.batch_decode(expected[0]["input_ids"])

    def call(i: int) -> bool:
        if i % 5 == 4:
            return tokenizer.batch_decode(expected[0]["input_ids"]) == decoded
        return dict(tokenizer(texts, **settings[i % 5])) == dict(expected[i % 5])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(400)))
    assert results.count(True) == 400, f"{results.count(False)} of 400 calls got another call's settings"
