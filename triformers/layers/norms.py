"""Normalisation layers: LayerNorm, and the RMS norm (variance in fp32, no mean, no bias).

RMSNorm matches `T5LayerNorm` / `LlamaRMSNorm` in transformers (Zhang & Sennrich 2019, "Root Mean Square
Layer Normalization"): the variance is computed in fp32 and the result cast back to half precision.
With `unit_offset` it is Gemma's (`GemmaRMSNorm`): the scale is (1 + weight), its weight starts at zero,
and the whole computation runs in fp32 before one cast back to the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, unit_offset: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))
        self.eps, self.unit_offset = eps, unit_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit_offset:
            scale = 1.0 + self.weight.float()
            if hasattr(F, "rms_norm"):
                return F.rms_norm(x.float(), (x.shape[-1],), scale, self.eps).to(x.dtype)
            x32 = x.float()
            return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * scale).to(x.dtype)
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32 and hasattr(F, "rms_norm"):
            # torch's own fused kernel: the same values and gradients, faster forward and backward
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def make_norm(kind: str, dim: int, eps: float, bias: bool = True, unit_offset: bool = False) -> nn.Module:
    if kind == "rms":
        return RMSNorm(dim, eps, unit_offset)
    return nn.LayerNorm(dim, eps=eps, bias=bias)
