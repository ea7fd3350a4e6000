"""Dropout whose CPU training path draws its mask faster than `F.dropout`.

On CPU, `F.dropout` draws the mask with `bernoulli_`, which is slow enough to be a visible share of a
small model's training step (see the README's benchmark notes). `rand(x.shape) >= p` (fp32 draws
whatever x's dtype) gives the same distribution faster; the mask is kept as bool for backward (as
`F.dropout` keeps it), and one multiply applies mask and 1/(1-p) scale each way. Other devices, eval
mode and p = 0 or 1 are nn.Dropout's own path. `dropout_matmul` is attention's dropout(probabilities) @ v,
which keeps for backward the probabilities (saved by the softmax before it anyway) and the mask, not a
second (B, nh, T, Tk) tensor of their product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


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


class _DroppedMatmul(torch.autograd.Function):
    """(x * keep * scale) @ v, its backward recomputing the dropped x from x and the mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, keep, v)
        ctx.scale = scale
        return torch.matmul(x * keep.to(x.dtype).mul_(scale), v)

    @staticmethod
    @once_differentiable  # a second derivative would need the graph of the recomputed product
    def backward(ctx, grad: torch.Tensor):
        x, keep, v = ctx.saved_tensors
        kept = keep.to(grad.dtype).mul_(ctx.scale)
        grad_x = torch.matmul(grad, v.transpose(-2, -1)).mul_(kept) if ctx.needs_input_grad[0] else None
        grad_v = torch.matmul((x * kept).transpose(-2, -1), grad) if ctx.needs_input_grad[3] else None
        return grad_x, None, None, grad_v


def _keep(x: torch.Tensor, p: float) -> torch.Tensor:
    return torch.rand(x.shape, device=x.device) >= p  # fp32 draws: a bf16 uniform is too coarse for p


def _fast(x: torch.Tensor, p: float, training: bool) -> bool:
    return training and p not in (0.0, 1.0) and x.device.type == "cpu" and x.is_floating_point()


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not _fast(x, p, training):
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, _keep(x, p), 1.0 / (1.0 - p))


def dropout_matmul(probs: torch.Tensor, v: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """dropout(probs, p, training) @ v (the same mask, the same values), keeping probs and the mask for
    backward instead of their product."""
    if not _fast(probs, p, training):
        return torch.matmul(dropout(probs, p, training), v)
    return _DroppedMatmul.apply(probs, _keep(probs, p), 1.0 / (1.0 - p), v)


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
