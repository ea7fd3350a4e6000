"""Linear layers that take oneDNN's matmul for CPU inference.

On CPU, `torch.ops.mkldnn._linear_pointwise` (the kernel PyTorch's own compiler emits for linear layers)
reads an ordinary (out, in) weight about 1.7x faster than `F.linear`'s default BLAS path on this
project's benchmark machine: 24 vs 40 ms per GPT-2 decode step at batch 1, 39 vs 65 ms at batch 8,
24 vs 40 ms for a 1024-row BERT matmul (see bench/). It has no autograd, so it is used only when no
gradient is needed; training and every other device go through `F.linear`.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = (os.environ.get("TRIFORMERS_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
           and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
_ONEDNN_BF16 = _ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if not _ONEDNN or x.device.type != "cpu" or weight.dtype != x.dtype or weight.layout != torch.strided:
        return False
    if x.dtype != torch.float32 and not (x.dtype == torch.bfloat16 and _ONEDNN_BF16):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(x, weight, bias); through oneDNN when it is CPU inference in fp32 or bf16."""
    if _use_onednn(x, weight) and (bias is None or bias.dtype == x.dtype):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) whose inference forward takes `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
