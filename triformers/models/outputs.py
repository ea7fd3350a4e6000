"""Model outputs: one small dataclass with named fields (None where a model has no such output)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class ModelOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V) for LMs, (B, labels) / (B, T, labels) for classifiers
    last_hidden_state: torch.Tensor | None = None  # (B, T, H): the body's last layer (decoder's for seq2seq)
    pooler_output: torch.Tensor | None = None  # (B, H): BERT pooler
    start_logits: torch.Tensor | None = None  # (B, T): extractive QA
    end_logits: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, H): encoder-decoder models

    def __getitem__(self, key: str) -> torch.Tensor | None:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]
