"""Streamers: receive token ids while `generate` runs and turn them into text as it becomes final.

The protocol is transformers' `BaseStreamer` (`generation/streamers.py`): `put(ids)` with the prompt
first and then each step's token, `end()` once. Text is released word by word, like
`TextStreamer`: the token cache is decoded whole (so multi-token characters and BPE spaces come
out right) and only the part up to the last space is emitted until the stream ends. Any tokenizer
with `decode(list[int], **kwargs) -> str` works (triformers', transformers', tokenizers').
"""

from __future__ import annotations

import queue
import unicodedata
from typing import Any

import torch

from ..errors import InputError


class TextStreamer:
    """Prints text as it is generated (override `on_text` to send it elsewhere)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        if not callable(getattr(tokenizer, "decode", None)):
            raise InputError(f"TextStreamer needs a tokenizer with decode(), got {type(tokenizer).__name__}")
        self.tokenizer, self.skip_prompt, self.decode_kwargs = tokenizer, skip_prompt, decode_kwargs
        self.token_cache: list[int] = []
        self.printed = 0  # characters of decode(token_cache) already emitted
        self.prompt_pending = True

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise InputError(f"TextStreamer streams one sequence, got a batch of {value.shape[0]}")
            value = value[0]
        if self.skip_prompt and self.prompt_pending:
            self.prompt_pending = False
            return
        self.token_cache.extend(value.tolist())
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):  # a line is complete: flush it and restart the cache from its last token
            printable = text[self.printed:]
            self.token_cache = self.token_cache[-1:]
            self.printed = len(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
        elif text and _is_cjk(ord(text[-1])):  # CJK characters are words on their own
            printable = text[self.printed:]
            self.printed += len(printable)
        elif all(c.isspace() or unicodedata.category(c)[0] in "LMN" for c in text[self.printed:]):
            printable = text[self.printed:]  # only letters, marks, numbers: nothing half-decoded
            self.printed += len(printable)
        else:  # hold back the last (maybe incomplete) word
            printable = text[self.printed:text.rfind(" ") + 1]
            self.printed += len(printable)
        self.on_text(printable)

    def end(self) -> None:
        printable = ""
        if self.token_cache:
            printable = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)[self.printed:]
        self.token_cache, self.printed, self.prompt_pending = [], 0, True
        self.on_text(printable, stream_end=True)

    def on_text(self, text: str, stream_end: bool = False) -> None:
        print(text, flush=True, end=None if stream_end else "")


class TextIteratorStreamer(TextStreamer):
    """Hands the text to another thread: run `generate` in a thread and iterate over this object."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.timeout = timeout

    def on_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.queue.put(text, timeout=self.timeout)
        if stream_end:
            self.queue.put(None, timeout=self.timeout)  # the end of the stream

    def __iter__(self) -> TextIteratorStreamer:
        return self

    def __next__(self) -> str:
        text = self.queue.get(timeout=self.timeout)
        if text is None:
            raise StopIteration
        return text


def _is_cjk(cp: int) -> bool:
    """A CJK Unified Ideograph (the blocks transformers' TextStreamer checks)."""
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))
