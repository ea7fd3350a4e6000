"""Linear layers that take oneDNN's matmul for CPU inference.

On CPU, `torch.ops.mkldnn._linear_pointwise` (the kernel PyTorch's own compiler emits for linear layers)
reads an ordinary (out, in) weight about 1.7x faster than `F.linear`'s default BLAS path on this
project's benchmark machine: 24 vs 40 ms per GPT-2 decode step at batch 1, 39 vs 65 ms at batch 8,
24 vs 40 ms for a 1024-row BERT matmul (see bench/). The kernel has no autograd of its own, so training
goes through a small autograd Function whose backward takes oneDNN too; autocast and other devices
go through `F.linear`.

`pack(weight)` keeps a second copy of a weight in oneDNN's blocked layout (what `TransformerModel.pack_weights`
does for a whole model): inference matmuls then skip the per-call reorder, which matters most in
bf16 (a bf16 GPT-2 decode step ~1.3x faster) and for a few rows at a time in fp32 (8-row matmuls of
T5/GPT-2 shapes ~1.5x faster). The packed copy is used only while the weight is
unchanged (same version counter, same storage): training, editing or casting the weight drops it and
falls back to the plain path.

A weight may also arrive as a transposed view of its checkpoint (GPT-2's Conv1D, stored (in, out)):
loading then costs nothing, and many-row matmuls read the view as fast; the first matmul of a few rows
(decoding) or one that takes a gradient writes it out row-major (`row_major`), which single-row
matmuls read ~1.7x faster (13.6 vs 23.2 ms for GPT-2 124M's 48 matrices, measured).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = (os.environ.get("TRIFORMERS_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
           and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
_ONEDNN_BF16 = _ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """oneDNN matmuls forward and for grad_x = g W (the weight as a transposed view, read in place);
    grad_W = g^T x through BLAS, which reads a transposed operand without copying it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad2 = grad.contiguous()  # (M, out); x is (M, in)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad2, weight.t())  # (M, in)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad2.t(), x)  # (out, in); BLAS reads the transpose in place, oneDNN would copy it
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad2.sum(0)
        return grad_x, grad_w, grad_b


def _onednn_ok(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    if not _ONEDNN or x.device.type != "cpu" or weight.dtype != x.dtype or weight.layout != torch.strided:
        return False
    if bias is not None and bias.dtype != x.dtype:
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _ONEDNN_BF16)


_FEW_ROWS = 16  # up to this many rows, a matmul reads a transposed weight up to ~1.7x slower than a row-major one


def is_transposed(weight: torch.Tensor) -> bool:
    """A 2-D tensor laid out as the transpose of a row-major one (GPT-2's Conv1D weights as loaded)."""
    return weight.dim() == 2 and not weight.is_contiguous() and weight.t().is_contiguous()


def mapped_from(weight: torch.Tensor, path) -> None:
    """Note that `weight` is a view of the memory-mapped file `path`, whose pages `row_major` may release."""
    weight.__dict__["_mapped_from"] = (weight.data_ptr(), path)


def row_major(weight: torch.Tensor) -> None:
    """Replace a transposed-view weight by a row-major copy of the same values, in place (`.data`: the
    Parameter, its gradient hooks and optimizer state are kept); other weights are left alone. Written in
    bands of rows, about twice as fast as `.contiguous()`, which walks the source one column at a time.
    The mapped file pages it was read from are released afterwards (as loading does for copied-out tensors)."""
    if not is_transposed(weight):
        return
    with torch.inference_mode(False), torch.no_grad():
        source = weight.detach().t()  # (in, out), row-major
        out = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
        for start in range(0, source.shape[0], 256):
            out[:, start:start + 256].copy_(source[start:start + 256].t())
        mapped = weight.__dict__.pop("_mapped_from", None)
        weight.data = out
    if mapped is not None and mapped[0] == source.data_ptr():  # still the file's own pages
        from ..hub import release_pages
        release_pages(source, mapped[1])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(x, weight, bias); through oneDNN on CPU in fp32 or bf16 (with its own backward when
    a gradient is needed), through F.linear everywhere else (and under autocast, which F.linear obeys).
    A transposed-view weight is made row-major on its first few-row or gradient-taking call."""
    if not weight.is_contiguous() and (x.numel() <= _FEW_ROWS * x.shape[-1]
                                       or (weight.requires_grad and torch.is_grad_enabled())):
        row_major(weight)
    if not _onednn_ok(x, weight, bias) or torch.is_autocast_enabled("cpu"):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        # 2-D in, 2-D out: views made inside a custom Function cannot be modified in place later
        y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)  # (M, out)
        return y.view(*x.shape[:-1], weight.shape[0])
    return _onednn(x, _packed(weight), bias)


def packable(weight: torch.Tensor) -> bool:
    return (_ONEDNN and weight.dim() == 2 and weight.device.type == "cpu" and weight.layout == torch.strided
            and (weight.dtype == torch.float32 or (weight.dtype == torch.bfloat16 and _ONEDNN_BF16)))


def pack(weight: torch.Tensor) -> None:
    """Attach a oneDNN-packed copy of `weight` (out, in) for inference; see the module docstring."""
    row_major(weight)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)  # no batch hint: good at 1 and 8 rows
    weight.__dict__["_onednn_packed"] = (weight._version, weight.data_ptr(), packed)


def unpack(weight: torch.Tensor) -> None:
    weight.__dict__.pop("_onednn_packed", None)


def _packed(weight: torch.Tensor) -> torch.Tensor:
    entry = weight.__dict__.get("_onednn_packed")
    if entry is None:
        return weight
    if entry[0] != weight._version or entry[1] != weight.data_ptr():  # modified in place, or replaced
        del weight.__dict__["_onednn_packed"]  # (`.data =`, `model.to(dtype)`): stale, free it
        return weight
    return entry[2]


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) whose inference forward takes `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
