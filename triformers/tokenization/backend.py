"""What the `tokenizers` backend cannot be trusted with, and the lock that makes a Tokenizer shareable.

- Errors: the backend raises bare `Exception`s for bad input and, for some malformed files, Rust panics,
  which reach Python as `pyo3_runtime.PanicException`, a `BaseException` that `except Exception` misses.
  `backend_errors(what)` turns both into a `TokenizerError` naming `what`.
- Allocation: a `precompiled_charsmap` (SentencePiece's normalizer, in tokenizer.json or spiece.model)
  starts with the byte size of its trie, and the backend reserves that much memory before reading it:
  16 bytes claiming a 4 GiB trie abort the process. `check_precompiled` refuses a charsmap whose trie
  does not fit inside it; a charsmap that fits but is malformed can only panic, which is caught.
- Threads: the backend holds the padding and truncation settings of a call as its own state, and a
  setting change while another thread's call runs is refused by it ("Already borrowed"). Each Tokenizer
  call that sets them, runs and resets them does so under the Tokenizer's lock (`new_lock`), as does
  every other call that changes the backend or runs with the interpreter lock released; `configure`
  maps transformers' padding / truncation arguments onto those settings.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import TokenizerError


def as_tokenizer_error(err: BaseException, what: str) -> BaseException:
    """An exception or panic of the `tokenizers` backend as a TokenizerError naming `what`; any other
    BaseException (KeyboardInterrupt, SystemExit) as it is."""
    if isinstance(err, TokenizerError):
        return err
    if isinstance(err, Exception):
        return TokenizerError(f"{what}: {err}")
    if type(err).__name__ == "PanicException":
        return TokenizerError(f"{what}: the tokenizers library failed on it ({str(err)[:200]})")
    return err


@contextmanager
def backend_errors(what: str) -> Iterator[None]:
    """`as_tokenizer_error` for a block."""
    try:
        yield
    except BaseException as err:
        mapped = as_tokenizer_error(err, what)
        if mapped is err:
            raise
        raise mapped from None


def check_precompiled(charsmap: bytes, where: str) -> None:
    """Refuse a SentencePiece precompiled charsmap whose declared trie size does not fit inside it."""
    if len(charsmap) < 4:
        raise TokenizerError(f"{where}: precompiled_charsmap of {len(charsmap)} bytes is too short; refused")
    (trie_bytes,) = struct.unpack("<I", charsmap[:4])
    if trie_bytes == 0 or trie_bytes % 4 or 4 + trie_bytes > len(charsmap):
        raise TokenizerError(f"{where}: precompiled_charsmap declares a trie of {trie_bytes} bytes in a charsmap of "
                             f"{len(charsmap)} bytes; refused")


def check_precompiled_nodes(tree: Any, where: str) -> None:
    """Every `{"type": "Precompiled"}` node of a parsed tokenizer.json, checked by `check_precompiled`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Precompiled":
                data = node.get("precompiled_charsmap")
                try:
                    raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
                except (binascii.Error, ValueError):
                    raw = None
                if raw is None:
                    raise TokenizerError(f"{where}: precompiled_charsmap is not base64 text; refused")
                check_precompiled(raw, where)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


LARGE_INTEGER = int(1e20)  # above this, model_max_length means "no limit" (as in transformers)
PADDING = {False: None, "do_not_pad": None, True: "longest", "longest": "longest", "max_length": "max_length"}
TRUNCATION = {
    None: None,
    False: None,
    "do_not_truncate": None,
    True: "longest_first",
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
}


def configure(tokenizer: Any, padding, truncation, max_length, stride, pad_to_multiple_of, padding_side) -> bool:
    """Put transformers' padding/truncation arguments onto the backend for one call (the caller holds the
    Tokenizer's lock and resets them afterwards); True if truncating."""
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
    ):
        raise TokenizerError(f"max_length must be a positive int or None, got {max_length!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
        raise TokenizerError(f"stride must be a non-negative int, got {stride!r}")
    if pad_to_multiple_of is not None and (isinstance(pad_to_multiple_of, bool)
                                           or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0):
        raise TokenizerError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
    if padding not in PADDING:
        raise TokenizerError(f"padding must be one of {list(PADDING)}, got {padding!r}")
    if truncation not in TRUNCATION:
        raise TokenizerError(f"truncation must be one of {list(TRUNCATION)}, got {truncation!r}")
    side = padding_side or tokenizer.padding_side
    if side not in ("left", "right"):
        raise TokenizerError(f"padding_side must be 'left' or 'right', got {side!r}")
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # transformers: max_length alone turns truncation on
    pad, trunc = PADDING[padding], TRUNCATION[truncation]
    if max_length is None:
        limited = tokenizer.model_max_length <= LARGE_INTEGER
        if pad == "max_length":
            pad, max_length = ("max_length", tokenizer.model_max_length) if limited else (None, None)
        if trunc is not None:
            trunc, max_length = (trunc, tokenizer.model_max_length) if limited else (None, max_length)
    if trunc is not None:
        try:
            tokenizer.backend.enable_truncation(max_length, stride=stride, strategy=trunc,
                                                direction=tokenizer.truncation_side)
        except (ValueError, OverflowError) as err:  # stride >= max_length, sizes beyond the backend's
            raise TokenizerError(f"truncation with max_length={max_length}, stride={stride}: {err}") from None
    if pad is not None:
        if tokenizer.pad_token_id is None:
            raise TokenizerError(
                "padding needs a pad token: set tokenizer.pad_token "
                "(e.g. tokenizer.pad_token = tokenizer.eos_token)"
            )
        tokenizer.backend.enable_padding(
            direction=side,
            pad_id=tokenizer.pad_token_id,
            pad_type_id=tokenizer.pad_token_type_id,
            pad_token=tokenizer.pad_token,
            pad_to_multiple_of=pad_to_multiple_of,
            length=max_length if pad == "max_length" else None,
        )
    return trunc is not None


_LOCKED: weakref.WeakSet = weakref.WeakSet()  # objects holding a `new_lock`, given a fresh one after fork


def new_lock(owner: Any) -> threading.Lock:
    """A lock for `owner` (kept as `owner._lock`), replaced in a child process after `fork`, where a thread
    of the parent might have held it."""
    _LOCKED.add(owner)
    return threading.Lock()


def _after_fork() -> None:
    for owner in list(_LOCKED):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
