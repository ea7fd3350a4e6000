"""oneDNN's CPU matmul for linear layers, and weights packed in its blocked layout.

`torch.ops.mkldnn._linear_pointwise` (the kernel PyTorch's own compiler emits for linear layers) reads an
ordinary (out, in) weight faster than `F.linear`'s default BLAS path for the shapes of these models on the
machines measured, except fp32 matmuls of a few rows on Intel CPUs (below; the figures are in the README's
benchmark notes). The kernel has no autograd of its own, so training goes
through `OneDNNLinear`, whose backward is BLAS: grad_x = g W reads the (out, in) weight as it is (oneDNN
would take it as a transposed operand and reorder it on every call), and grad_W = g^T x reads the transposed
operand in place. It keeps for backward only what a wanted gradient reads: x for grad_W, the weight for
grad_x, so a frozen layer under LoRA holds no activation.

`pack(weight)` keeps a second copy of a weight in oneDNN's blocked layout (what
`TransformerModel.pack_weights` does for a whole model): inference matmuls then skip the per-call reorder,
which matters most in bf16 and for a few rows at a time in fp32. The packed copy is used only while the
weight is unchanged (same version counter, same storage): training, editing or casting the weight drops it.

Which kernel is faster depends on the machine. PyTorch's BLAS is MKL, whose single-row fp32 kernels are
fast on Intel CPUs and slow elsewhere: on an Intel Xeon VM, oneDNN took 1.0-2.0x `F.linear`'s time at 1-3
rows for every block matrix of SmolLM2, GPT-2 and Qwen2.5 (from 4-8 rows on it was as fast or faster for the
wide ones and the LM heads; `python -m bench.linear_kernels`), while on an AMD EPYC VM oneDNN was ~1.7x
faster at one row. So `blas_first(x)` sends fp32 matmuls of up to `BLAS_ROWS` rows to
`F.linear` where MKL runs on an Intel CPU (`TRIFORMERS_BLAS_FEW_ROWS=0` / `1` overrides the guess); the
choice is fixed per machine, so a model computes the same numbers in every run there.
"""

from __future__ import annotations

import os
import platform

import torch

from .storage import row_major

AVAILABLE = (os.environ.get("TRIFORMERS_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
             and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
BF16 = AVAILABLE and torch.ops.mkldnn._is_mkldnn_bf16_supported()
BLAS_ROWS = 3  # up to this many rows, MKL's fp32 matmul beats oneDNN's on Intel CPUs (module docstring)


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _blas_for_few_rows() -> bool:
    setting = os.environ.get("TRIFORMERS_BLAS_FEW_ROWS")
    if setting is not None:
        return setting != "0"
    return torch.backends.mkl.is_available() and "Intel" in _cpu_vendor()


BLAS_FEW_ROWS = AVAILABLE and _blas_for_few_rows()


def blas_first(x: torch.Tensor) -> bool:
    """Whether this fp32 matmul of few rows runs faster through `F.linear` (MKL) on this machine."""
    return BLAS_FEW_ROWS and x.dtype == torch.float32 and x.numel() <= BLAS_ROWS * x.shape[-1]


def matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T + bias through oneDNN (weight plain or packed)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """oneDNN's matmul forward; BLAS for grad_x = g W and grad_W = g^T x, each saved operand kept only when
    the gradient that reads it is wanted (as autograd's own linear does)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        wants_x, wants_weight = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if wants_weight else None, weight if wants_x else None)
        ctx.has_bias = bias is not None
        return matmul(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad2 = grad.contiguous()  # (M, out); x is (M, in)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad2, weight)  # (M, in)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad2.t(), x)  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad2.sum(0)
        return grad_x, grad_w, grad_b


def usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether oneDNN takes this matmul: CPU, fp32 (or bf16 where the CPU has it), matching dtypes."""
    if not AVAILABLE or x.device.type != "cpu" or weight.dtype != x.dtype or weight.layout != torch.strided:
        return False
    if bias is not None and bias.dtype != x.dtype:
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and BF16)


def packable(weight: torch.Tensor) -> bool:
    return (AVAILABLE and weight.dim() == 2 and weight.device.type == "cpu" and weight.layout == torch.strided
            and (weight.dtype == torch.float32 or (weight.dtype == torch.bfloat16 and BF16)))


def pack(weight: torch.Tensor) -> None:
    """Attach a oneDNN-packed copy of `weight` (out, in) for inference."""
    row_major(weight)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)  # no batch hint: good at 1 and 8 rows
    weight.__dict__["_onednn_packed"] = (weight._version, weight.data_ptr(), packed)


def unpack(weight: torch.Tensor) -> None:
    weight.__dict__.pop("_onednn_packed", None)


def packed(weight: torch.Tensor) -> torch.Tensor:
    """The packed copy of `weight` while it is current, else `weight` itself (a stale copy is freed)."""
    entry = weight.__dict__.get("_onednn_packed")
    if entry is None:
        return weight
    if entry[0] != weight._version or entry[1] != weight.data_ptr():  # modified in place, or replaced
        del weight.__dict__["_onednn_packed"]  # (`.data =`, `model.to(dtype)`): stale, free it
        return weight
    return entry[2]
