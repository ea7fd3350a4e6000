"""stop_strings against transformers 5.24: `StopStringCriteria` decides as transformers' does on sequences built
from the fragments of stop strings (byte-level GPT-2 vocabulary, and T5's sentencepiece one), and `generate`
with `stop_strings` and the real GPT-2 tokenizer stops where transformers stops.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from conftest import asset
from trainer_assets import tiny_gpt2

import triformers
from triformers import InputError, StopStringCriteria

transformers = pytest.importorskip("transformers")
STOPS = ["stop", "\n\n", " the end", "é!"]
FRAGMENTS = ["st", "op", "s", "to", "pped", "las", "topper", " stop", "stop", "\n", "\n\n", " the", " end", " en",
             "d", "caf", "é", "!", " x", "ing"]


@pytest.fixture(scope="module")
def gpt2_tokenizers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-tok")
    files = asset("gpt2-tokenizer")
    transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt")).save_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder), triformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def t5_tokenizers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5-tok")
    shutil.copy(asset("spm-tokenizer/spiece.model"), folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 100}))
    return transformers.AutoTokenizer.from_pretrained(folder), triformers.AutoTokenizer.from_pretrained(folder)


def _rows(tokenizer, count: int = 400, seed: int = 0) -> torch.Tensor:
    """Sequences of 1-6 random fragments (each tokenised on its own), left-filled to one width."""
    rng = random.Random(seed)
    pieces = [tokenizer(f, add_special_tokens=False)["input_ids"] for f in FRAGMENTS]
    rows = [sum((rng.choice(pieces) for _ in range(rng.randint(1, 6))), []) for _ in range(count)]
    width = max(len(r) for r in rows)
    filler = pieces[FRAGMENTS.index(" x")][0]
    return torch.tensor([[filler] * (width - len(r)) + r for r in rows])


@pytest.mark.parametrize("which", ["gpt2", "t5"])
def test_stop_string_criterion_decides_as_transformers(which, gpt2_tokenizers, t5_tokenizers):
    theirs_tok, ours_tok = gpt2_tokenizers if which == "gpt2" else t5_tokenizers
    rows = _rows(theirs_tok)
    expected = transformers.StopStringCriteria(theirs_tok, STOPS)(rows, None)
    assert 20 < int(expected.sum()) < 380  # both outcomes are well represented
    assert torch.equal(StopStringCriteria(ours_tok, STOPS)(rows, None), expected)
    assert torch.equal(StopStringCriteria(theirs_tok, STOPS)(rows, None), expected)  # transformers' tokenizer too


def test_generate_stops_at_a_stop_string_as_transformers(tmp_path, gpt2_tokenizers):
    theirs_tok, ours_tok = gpt2_tokenizers
    folder = tiny_gpt2(tmp_path / "gpt2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ours = triformers.AutoModelForCausalLM.from_pretrained(folder)
    prompt = theirs_tok(["The weather today is", "Once upon a time"])["input_ids"]
    ids = torch.tensor([prompt[0][:4], prompt[1][:4]])
    free = hf.generate(ids, max_new_tokens=12, min_new_tokens=12)
    text = theirs_tok.decode(free[0, 4:])
    stop = text[len(theirs_tok.decode(free[0, 4:7])) - 2:][:3]  # three characters across a token boundary
    assert stop and stop in text
    kwargs = dict(max_new_tokens=12, stop_strings=[stop], eos_token_id=None)
    expected = hf.generate(ids, tokenizer=theirs_tok, **kwargs)
    got = ours.generate(ids, tokenizer=ours_tok, **kwargs)
    assert torch.equal(got, expected)
    alone = ours.generate(ids[:1], tokenizer=ours_tok, **kwargs)  # one row: it ends with the token completing it
    assert alone.shape[1] < free.shape[1]
    assert stop in theirs_tok.decode(alone[0, 4:]) and stop not in theirs_tok.decode(alone[0, 4:-1])
    assert torch.equal(ours.generate(ids, tokenizer=theirs_tok, **kwargs), expected)
    assert torch.equal(ours.generate(ids, tokenizer=ours_tok, num_beams=2, **kwargs),
                       hf.generate(ids, tokenizer=theirs_tok, num_beams=2, **kwargs))
    with pytest.raises(InputError, match="stop_strings needs the model's tokenizer"):
        ours.generate(ids, **kwargs)
