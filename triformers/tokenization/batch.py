"""`BatchEncoding`: the dict a tokenizer call returns, usable as `model(**batch)`; and `pad_ids`, the one
helper that pads a batch of id lists (collators, pipelines, `Tokenizer.pad` all use it).

`BatchEncoding` mirrors the part of transformers' `BatchEncoding` that training and inference code
touches: key and attribute access, `.to(device)`, and the alignment helpers (`word_ids`, `tokens`,
`sequence_ids`) read from the `tokenizers` encodings.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from tokenizers import Encoding

from ..errors import TokenizerError


class BatchEncoding(dict):
    """input_ids, attention_mask, ... as lists (or tensors with return_tensors="pt")."""

    def __init__(self, data: dict[str, Any], encodings: list[Encoding] | None = None):
        super().__init__(data)
        self.encodings = encodings or []

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; it has {list(self)}") from None

    def __getstate__(self) -> dict:
        return {"data": dict(self), "encodings": self.encodings}

    def __setstate__(self, state: dict) -> None:
        self.update(state["data"])
        self.encodings = state["encodings"]

    def to(self, device: str | torch.device) -> BatchEncoding:
        """Move every tensor to `device` (in place, like transformers), and return self."""
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.to(device)
        return self

    def _encoding(self, batch_index: int) -> Encoding:
        if not self.encodings:
            raise TokenizerError("this BatchEncoding keeps no alignment information")
        if not -len(self.encodings) <= batch_index < len(self.encodings):
            raise TokenizerError(f"batch index {batch_index} out of range for a batch of {len(self.encodings)}")
        return self.encodings[batch_index]

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, the index of the word it came from (None for special and pad tokens)."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 (first text), 1 (pair text) or None (special and pad tokens)."""
        return self._encoding(batch_index).sequence_ids

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens


def pad_ids(rows: Sequence[Sequence[int] | torch.Tensor], value: int, side: str = "right", length: int | None = None,
            multiple_of: int | None = None, dtype: torch.dtype = torch.long,
            device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists (or 1-D tensors) to one length: `(ids (B, T), attention_mask (B, T))`.

    T is the longest row, or `length` when given (a row longer than that is an error), rounded up to a
    multiple of `multiple_of`; `side="left"` puts the padding in front, so that every row ends at the
    last column (what generation needs).
    """
    if side not in ("left", "right"):
        raise TokenizerError(f"padding side must be 'left' or 'right', got {side!r}")
    if multiple_of is not None and (not isinstance(multiple_of, int) or multiple_of < 1):
        raise TokenizerError(f"pad_to_multiple_of must be a positive integer, got {multiple_of!r}")
    if not len(rows):
        raise TokenizerError("cannot pad an empty batch")
    longest = max(len(row) for row in rows)
    target = longest if length is None else length
    if target < longest:
        raise TokenizerError(f"cannot pad to length {target}: a row has {longest} ids")
    if multiple_of:
        target = -(-target // multiple_of) * multiple_of
    ids = torch.full((len(rows), target), value, dtype=dtype)
    mask = torch.zeros((len(rows), target), dtype=torch.long)
    for index, row in enumerate(rows):
        n = len(row)
        if n:
            where = slice(target - n, target) if side == "left" else slice(0, n)
            ids[index, where] = torch.as_tensor(row, dtype=dtype)
            mask[index, where] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask
