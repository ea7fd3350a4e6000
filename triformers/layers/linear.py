"""Linear layers: `nn.Linear`'s parameters and state dict, with a forward that takes the fastest CPU kernel.

`linear(x, weight, bias)` is `F.linear` in meaning. On CPU in fp32 or bf16 it runs oneDNN's matmul
(`layers/onednn.py`; with its own backward when a gradient is needed, a packed weight when one is
attached), except fp32 matmuls of a few rows on machines where BLAS runs those faster; under autocast
and on other devices it is `F.linear`. A weight still held as a transposed view of its checkpoint
(`layers/storage.py`) is written out row-major on its first few-row (decoding) or gradient-taking call,
where that layout is read faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import onednn
from .storage import row_major

_FEW_ROWS = 16  # up to this many rows, a matmul reads a transposed weight markedly slower than a row-major one


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if not weight.is_contiguous() and (x.numel() <= _FEW_ROWS * x.shape[-1]
                                       or (weight.requires_grad and torch.is_grad_enabled())):
        row_major(weight)
    if not onednn.usable(x, weight, bias) or torch.is_autocast_enabled("cpu"):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        # 2-D in, 2-D out: views made inside a custom Function cannot be modified in place later
        y = onednn.OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)  # (M, out)
        return y.view(*x.shape[:-1], weight.shape[0])
    if onednn.blas_first(x):
        return F.linear(x, weight, bias)
    return onednn.matmul(x, onednn.packed(weight), bias)


def training_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The forward kernel `linear` runs when a gradient is wanted (oneDNN where usable), for a custom autograd
    Function's forward (which records nothing)."""
    if not weight.is_contiguous() and weight.requires_grad:
        row_major(weight)
    if onednn.usable(x, weight, bias):
        return onednn.matmul(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) whose forward takes `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
