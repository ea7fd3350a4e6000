"""Stopping criteria with transformers' interface (`generation/stopping_criteria.py`, v5.24):
`criterion(input_ids, scores, **kwargs)` returns a (N,) bool tensor, True for the rows that are done.

`generate` checks the length limit and the EOS ids itself, vectorised inside its loop; the criteria that
need more (a clock, text matching, the caller's own) run once per step only when there are any.
`StopStringCriteria` stops a row when a stop string ends inside its last token, in transformers' sense
(the string may start inside an earlier token and the last token may run past its end): the tokens are
turned into their text once per vocabulary (bytes for byte-level vocabularies such as GPT-2's, as
transformers matches them), and each step compares the text of a row's last few tokens.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch

from ..errors import InputError

_TEXT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {(size, mode): texts}
_PREFIX = "abcdef"  # decoded in front of a token, then cut off, so that the token's leading space survives


class StoppingCriteria:
    """Base class: `__call__(input_ids, scores, **kwargs) -> (N,) bool tensor`, True where a row is done.
    `scores` is the tuple of processed scores so far when generate returns them, else None."""

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is abstract: subclass it and implement __call__")


class StoppingCriteriaList(list):
    """Criteria combined with `or`."""

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            done = done | criterion(input_ids, scores, **kwargs)
        return done

    @property
    def max_length(self) -> int | None:
        return next((c.max_length for c in self if isinstance(c, MaxLengthCriteria)), None)


class MaxLengthCriteria(StoppingCriteria):
    """Done once a sequence has `max_length` tokens (the prompt included, for decoder-only models)."""

    def __init__(self, max_length: int, max_position_embeddings: int | None = None):
        self.max_length, self.max_position_embeddings = max_length, max_position_embeddings

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.max_length, dtype=torch.bool,
                          device=input_ids.device)


class MaxTimeCriteria(StoppingCriteria):
    """Done once `max_time` seconds have passed since `initial_timestamp` (by default, since creation)."""

    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        done = time.time() - self.initial_timestamp > self.max_time
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class EosTokenCriteria(StoppingCriteria):
    """Done when the last token is one of `eos_token_id`."""

    def __init__(self, eos_token_id: int | list[int] | torch.Tensor):
        if not isinstance(eos_token_id, torch.Tensor):
            eos_token_id = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        self.eos_token_id = eos_token_id.reshape(-1)

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        self.eos_token_id = self.eos_token_id.to(input_ids.device)
        return torch.isin(input_ids[:, -1], self.eos_token_id)


class StopStringCriteria(StoppingCriteria):
    """Done when one of `stop_strings` ends inside the last token (see the module docstring); needs the
    model's tokenizer (triformers' or transformers' fast tokenizer)."""

    def __init__(self, tokenizer: Any, stop_strings: str | list[str]):
        strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        if not strings or not all(isinstance(s, str) and s for s in strings):
            raise InputError(f"stop_strings must be a non-empty string or list of them, got {stop_strings!r}")
        self.stop_strings = tuple(strings)
        self.texts, mode = _token_texts(tokenizer)  # id -> the token's text (bytes unless mode is None)
        self.empty = "" if mode is None else b""
        self.targets = [s if mode is None else s.encode() for s in strings]
        self.window = max(len(t) for t in self.targets)  # a match spans at most this many (non-empty) tokens

    def __call__(self, input_ids: torch.Tensor, scores: tuple | None, **kwargs: Any) -> torch.Tensor:
        done = [self._matches(row) for row in input_ids[:, -self.window:].tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _matches(self, row: list[int]) -> bool:
        pieces = [self.texts[t] if 0 <= t < len(self.texts) and self.texts[t] is not None else self.empty
                  for t in row]
        text = self.empty.join(pieces)
        last_start = len(text) - len(pieces[-1])
        # the last occurrence ends last: the row is done when it ends inside the last token
        return any(text.rfind(t) >= 0 and text.rfind(t) + len(t) > last_start for t in self.targets)


def _matching_mode(decoder: Any) -> str | None:
    """transformers' choice: byte-level vocabularies (GPT-2) and byte-fallback ones (<0xNN> tokens) match
    bytes, the others text."""
    if type(decoder).__name__ == "ByteLevel":
        return "byte_level"
    state = str(getattr(decoder, "__getstate__", lambda: "")())
    if '"ByteFallback"' in state:
        return "byte_fallback"
    return "byte_level" if '"ByteLevel"' in state else None


def _token_texts(tokenizer: Any) -> tuple[list, str | None]:
    """(each id's text, the matching mode), computed once per vocabulary."""
    vocab = tokenizer.get_vocab()
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "backend", None)
    decoder = getattr(backend, "decoder", None)
    mode = _matching_mode(decoder)
    key = (len(vocab), mode)  # a vocabulary grown by add_tokens is turned into text again
    try:
        cached = _TEXT_CACHE.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        cached = {}
    if key not in cached:
        cached.clear()
        cached[key] = _texts(tokenizer, vocab, decoder, mode)
    return cached[key], mode


def _texts(tokenizer: Any, vocab: dict[str, int], decoder: Any, mode: str | None) -> list:
    texts: list = [None] * (max(vocab.values()) + 1)
    byte_of = {char: byte for byte, char in _bytes_to_unicode().items()}
    for token, index in vocab.items():
        if mode == "byte_level" and all(c in byte_of for c in token):
            texts[index] = bytes(byte_of[c] for c in token)
        elif mode == "byte_fallback" and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            try:
                texts[index] = bytes([int(token[3:5], 16)])
            except ValueError:
                pass
    base = tokenizer(_PREFIX, add_special_tokens=False)["input_ids"]
    base_tokens = [tokenizer.convert_ids_to_tokens(int(i)) for i in base]
    join = getattr(tokenizer, "convert_tokens_to_string", None) or decoder.decode
    for token, index in vocab.items():
        if texts[index] is None:
            text = join(base_tokens + [token])
            text = text[text.index(_PREFIX) + len(_PREFIX):] if _PREFIX in text else text
            texts[index] = text if mode is None else text.encode()
    return texts


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (its byte-level BPE vocabulary is written in these)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table
