"""`BatchEncoding`: the dict a tokenizer call returns, usable as `model(**batch)`.

Mirrors the part of transformers' `BatchEncoding` that training and inference code touches:
key and attribute access, `.to(device)`, and the alignment helpers (`word_ids`, `tokens`,
`sequence_ids`) read from the `tokenizers` encodings.
"""

from __future__ import annotations

from typing import Any

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
