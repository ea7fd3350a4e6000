"""Dropout whose CPU training path draws its mask faster than `F.dropout`.

On CPU, `F.dropout` draws its mask with `bernoulli_` and `torch.rand` with one serial Mersenne-Twister call
per element: either is a visible share of a training step (T5-small's LoRA step spent 22% of its time in
`torch.rand`). `keep_mask` draws 16-bit words from numpy's PCG64 (seeded by one draw from torch's generator,
so `torch.manual_seed` and `fork_rng` govern the masks as before), four per 64-bit output, and resolves the
rare ties with a second word: element-wise it is a 32-bit uniform draw compared with p (P(drop) =
round(p 2^32) / 2^32, finer than an fp32 `rand`), about 4x faster. The mask is kept as bool for backward (as
`F.dropout` keeps it), and one multiply applies mask and 1/(1-p) scale each way. Other devices, eval
mode and p = 0 or 1 are nn.Dropout's own path. Attention's dropout draws its mask here too (`keep_mask`);
`dropout_linear` is LoRA's dropout(x) @ A^T, keeping x and the mask rather than the dropped copy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * scaled(keep, x.dtype, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * scaled(keep, grad.dtype, ctx.scale), None, None


class _DroppedLinear(torch.autograd.Function):
    """F.linear(x * keep * scale, weight), keeping x and the mask for backward rather than the dropped copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, keep, weight)
        ctx.scale = scale
        return F.linear(x * scaled(keep, x.dtype, scale), weight)

    @staticmethod
    @once_differentiable  # a second derivative would need the graph of the recomputed product
    def backward(ctx, grad: torch.Tensor):
        x, keep, weight = ctx.saved_tensors
        kept = scaled(keep, grad.dtype, ctx.scale)
        grad_x = torch.matmul(grad, weight).mul_(kept) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[3]:
            grad_w = grad.reshape(-1, grad.shape[-1]).t() @ (x * kept).reshape(-1, x.shape[-1])
        return grad_x, None, None, grad_w


def dropout_linear(x: torch.Tensor, weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.linear(dropout(x, p, training), weight) (the same mask, the same values), keeping x and the mask for
    backward instead of the dropped copy: LoRA's A, whose input x is kept anyway or shared by several slices
    (T5's q and v read one x, every decoder layer's cross-attention v the encoder's output)."""
    if not _fast(x, p, training):
        return F.linear(dropout(x, p, training), weight)
    return _DroppedLinear.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p), weight)


def keep_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A CPU bool mask of `shape`, each element False with probability round(p 2^32) / 2^32, independently."""
    n = math.prod(shape)
    high, low = divmod(round(p * 2**32), 1 << 16)  # drop where the 32-bit draw (high word, low word) < (high, low)
    bits = np.random.PCG64(int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64)))
    words = bits.random_raw(-(-n // 4)).view(np.uint16)[:n]  # the high words
    keep = words >= high
    if low:  # a high word equal to `high` (1 in 65536) is decided by a low word
        ties = np.flatnonzero(words == high)
        if ties.size:
            keep[ties] = bits.random_raw(-(-ties.size // 4)).view(np.uint16)[:ties.size] >= low
    return torch.from_numpy(keep).view(shape)


def scaled(keep: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """The bool mask as the multiplier dropout applies: keep * 1/(1-p), in `dtype`."""
    return keep.to(dtype).mul_(scale)


def _fast(x: torch.Tensor, p: float, training: bool) -> bool:
    return training and p not in (0.0, 1.0) and x.device.type == "cpu" and x.is_floating_point()


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not _fast(x, p, training):
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
