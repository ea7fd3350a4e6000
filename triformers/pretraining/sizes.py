"""ModelSize: the sizes of a model pre-trained from scratch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelSize:
    hidden_size: int = 256
    layers: int = 4  # encoder layers (and decoder layers of an encoder-decoder)
    heads: int = 4
    intermediate_size: int | None = None  # None: 4 * hidden_size
    seq_len: int = 128  # tokens per example (encoder inputs for encoder-decoder models)
    dropout: float | None = None  # None: the dialect's default
