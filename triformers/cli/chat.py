"""`triformers chat`: a conversation with a chat model in the terminal.

Each line you type is a user message; the model's reply streams out as it is generated (`TextStreamer`) and
joins the history, which the model's chat template renders whole for every turn. `/reset` starts over (keeping
`--system`), `/exit` (or end of input) quits. Greedy unless `--temperature` is above 0. Lines come from stdin,
so a conversation can be scripted:

    triformers chat --model smollm2-dir --system "You are terse."
    printf 'Hi!\\n/reset\\nWhat is 2+2?\\n/exit\\n' | triformers chat --model smollm2-dir --max-new-tokens 20
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterator

import torch

from ..errors import InputError
from .registry import Command, register

COMMANDS_HELP = "commands: /reset (forget the conversation), /exit"


def _chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or hub id (a decoder with a chat template)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the model's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", help="float32, bfloat16, float16, auto")
    parser.add_argument("--system", help="a system message that opens the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the longest reply, in tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above 0: sample at it")
    parser.add_argument("--top-k", type=int, help="sample from the k likeliest tokens")
    parser.add_argument("--top-p", type=float, help="sample from the smallest set with this much probability")
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, help="makes sampling repeatable")


def _lines() -> Iterator[str]:
    """The user's lines: with a prompt at a terminal, else plain lines of stdin, until end of input."""
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and line == "":
            return
        yield line.strip()


def _fit(tokenizer: Any, history: list[dict], limit: int | None, room: int) -> Any:
    """The prompt of the history; the oldest turns (never the system message) dropped until it fits the model."""
    while True:
        batch = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt")
        first = 1 if history[0]["role"] == "system" else 0
        if limit is None or batch["input_ids"].shape[1] + room <= limit or len(history) - first <= 1:
            return batch
        del history[first:first + 2]  # one user message and its reply
        print("(the conversation is longer than the model's context: the oldest turn was dropped)", file=sys.stderr)


def _generate_kwargs(args: argparse.Namespace, tokenizer: Any, model: Any) -> dict[str, Any]:
    eos = model.config.eos_token_id
    eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)  # the template's end of turn (<|im_end|>, <|eot_id|>, ...)
    kwargs: dict[str, Any] = dict(max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
                                  eos_token_id=eos or None, do_sample=args.temperature > 0)
    if args.temperature > 0:
        kwargs.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        if args.seed is not None:
            kwargs["generator"] = torch.Generator().manual_seed(args.seed)
    if tokenizer.pad_token_id is None and eos:
        kwargs["pad_token_id"] = eos[0]
    return kwargs


def run_chat(args: argparse.Namespace) -> int:
    from ..auto import AutoModelForCausalLM
    from ..generation import TextStreamer
    from ..pipelines.base import load, resolve_device

    if args.max_new_tokens < 1:
        raise InputError(f"chat: --max-new-tokens must be at least 1, got {args.max_new_tokens}")
    model, tokenizer = load(AutoModelForCausalLM, args.model, args.tokenizer, args.dtype, "chat")
    device = resolve_device(args.device)
    model = (model.to(device) if device is not None else model).eval()
    tokenizer.get_chat_template()  # no template: say so before the first line is read
    opening = [{"role": "system", "content": args.system}] if args.system else []
    history = list(opening)
    kwargs = _generate_kwargs(args, tokenizer, model)
    print(f"chatting with {args.model}; {COMMANDS_HELP}", file=sys.stderr)
    for text in _lines():
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(opening)
            print("(conversation reset)", file=sys.stderr)
            continue
        if text.startswith("/"):
            print(f"unknown command {text}; {COMMANDS_HELP}", file=sys.stderr)
            continue
        history.append({"role": "user", "content": text})
        batch = _fit(tokenizer, history, model.max_length(), args.max_new_tokens).to(model.device)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        with torch.inference_mode():
            out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], streamer=streamer,
                                 **kwargs)
        reply = tokenizer.decode(out[0, batch["input_ids"].shape[1]:].tolist(), skip_special_tokens=True)
        history.append({"role": "assistant", "content": reply.strip()})
    return 0


register(Command("chat", "talk with a chat model in the terminal (streamed replies, history, /reset, /exit)",
                 _chat_arguments, run_chat))
