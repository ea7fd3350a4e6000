"""Model outputs: one small dataclass with named fields (None where a model has no such output).

A field may hold a `Deferred` computation, run on first access: a masked-LM training step computes its
loss from the ~15% of positions that carry a label and builds the full (B, T, V) logits only if the
caller reads them (a quarter of BERT pre-training's FLOPs otherwise spent on logits no one uses).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Callable

import torch


class Deferred:
    """A tensor computed when first read, under the grad and autocast modes of the forward that made it."""

    def __init__(self, compute: Callable[[], torch.Tensor], device_type: str):
        self.compute, self.device_type = compute, device_type
        self.grad = torch.is_grad_enabled()
        self.autocast = torch.is_autocast_enabled(device_type)
        self.autocast_dtype = torch.get_autocast_dtype(device_type) if self.autocast else None

    def __call__(self) -> torch.Tensor:
        with ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(self.grad))
            stack.enter_context(torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast))
            return self.compute()


@dataclass
class ModelOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V) for LMs, (B, labels) / (B, T, labels) for classifiers
    last_hidden_state: torch.Tensor | None = None  # (B, T, H): the body's last layer (decoder's for seq2seq)
    pooler_output: torch.Tensor | None = None  # (B, H): BERT pooler
    start_logits: torch.Tensor | None = None  # (B, T): extractive QA
    end_logits: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, H): encoder-decoder models

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if type(value) is Deferred:
            value = value()
            object.__setattr__(self, name, value)
        return value

    def __getitem__(self, key: str) -> torch.Tensor | None:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]
