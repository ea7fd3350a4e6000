"""Dropout whose CPU training path draws its mask faster than `F.dropout`.

On CPU, `F.dropout` draws the mask with `bernoulli_`, which is slow enough to be a visible share of a
small model's training step (see the README's benchmark notes). `rand(x.shape) >= p` (fp32 draws
whatever x's dtype) gives the same distribution faster; the mask is kept as bool for backward (as
`F.dropout` keeps it), and one multiply applies mask and 1/(1-p) scale each way. Other devices, eval
mode and p = 0 or 1 are nn.Dropout's own path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep.to(grad.dtype).mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p in (0.0, 1.0) or x.device.type != "cpu" or not x.is_floating_point():
        return F.dropout(x, p, training)
    keep = torch.rand(x.shape, device=x.device) >= p  # fp32 draws: a bf16 uniform is too coarse for p
    return _MaskedScale.apply(x, keep, 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
