"""Chats end to end: `pipeline("text-generation")` with messages against transformers' pipeline (the oracle), and
`triformers chat` fed through stdin. The model is a tiny random GPT-2 (2 layers, n_embd 32) over the real
SmolLM2 tokenizer and its ChatML template; greedy decoding, so both libraries must give the same replies.
"""

from __future__ import annotations

import io
import shutil
import sys

import pytest
import torch
from chat_assets import copy_tokenizer, smollm2_folder

from conftest import asset
from triformers import pipeline
from triformers.cli.main import main
from triformers.errors import InputError

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

SYSTEM = "You are terse."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}]
OTHER = [{"role": "user", "content": "What is 2+2?"}]
PREFILL = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "The colour is"}]
GREEDY = dict(max_new_tokens=8, do_sample=False)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat") / "tiny-chatml-gpt2"
    folder.mkdir()
    copy_tokenizer(smollm2_folder(), folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def generators(chat_model):
    return pipeline("text-generation", model=str(chat_model)), transformers.pipeline("text-generation",
                                                                                     model=str(chat_model))


def test_a_chat_comes_back_with_the_reply_appended_as_transformers(generators):
    ours, hf = generators
    for inputs in (CHAT, OTHER, [CHAT, OTHER]):
        got, want = ours(inputs, **GREEDY), hf(inputs, **GREEDY)
        assert got == want
    single = ours(CHAT, **GREEDY)
    assert len(single) == 1 and single[0]["generated_text"][:-1] == CHAT
    assert single[0]["generated_text"][-1]["role"] == "assistant"


def test_a_chat_ending_with_the_assistant_is_continued(generators):
    ours, hf = generators
    got, want = ours(PREFILL, **GREEDY), hf(PREFILL, **GREEDY)
    assert got == want and got[0]["generated_text"][-1]["content"].startswith("The colour is")
    assert len(got[0]["generated_text"]) == len(PREFILL)
    for kwargs in (dict(return_full_text=False), dict(continue_final_message=False)):
        assert ours(PREFILL, **GREEDY, **kwargs) == hf(PREFILL, **GREEDY, **kwargs)


def test_chats_and_texts_give_clear_errors(generators):
    ours, _ = generators
    with pytest.raises(InputError, match="strings or chats"):
        ours([[{"role": "user"}]], **GREEDY)


def _chat_cli(monkeypatch, capsys, lines: str, *flags: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = main(["chat", *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _reply(generator, chat) -> str:
    return generator(chat, return_full_text=False, **GREEDY)[0]["generated_text"]


def test_the_chat_command_streams_replies_keeps_history_and_resets(chat_model, generators, monkeypatch, capsys):
    ours, _ = generators
    flags = ("--model", str(chat_model), "--max-new-tokens", "8", "--system", SYSTEM)
    code, out, err = _chat_cli(monkeypatch, capsys, "Hello!\nAnd then?\n/reset\nHello!\n/exit\nnever read\n", *flags)
    assert code == 0 and "(conversation reset)" in err
    first = _reply(ours, CHAT)
    second = _reply(ours, CHAT + [{"role": "assistant", "content": first.strip()},
                                  {"role": "user", "content": "And then?"}])
    assert out == f"{first}\n{second}\n{first}\n"  # after /reset the same first turn: the same reply
    code, out, err = _chat_cli(monkeypatch, capsys, "What is 2+2?\n/help\n", "--model", str(chat_model),
                               "--max-new-tokens", "8")
    assert code == 0 and out == _reply(ours, OTHER) + "\n" and "unknown command /help" in err


def test_the_chat_command_samples_repeatably_and_refuses_a_model_without_template(chat_model, monkeypatch, capsys,
                                                                                 tmp_path):
    flags = ("--model", str(chat_model), "--max-new-tokens", "6", "--temperature", "0.9", "--seed", "3")
    runs = [_chat_cli(monkeypatch, capsys, "Hello!\n", *flags)[1] for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].strip()
    plain = tmp_path / "plain-tokenizer"
    shutil.copytree(asset("gpt2-tokenizer"), plain)
    code, out, err = _chat_cli(monkeypatch, capsys, "Hello!\n", "--model", str(chat_model), "--tokenizer",
                               str(plain))
    assert code == 1 and "has no chat template" in err and out == ""
