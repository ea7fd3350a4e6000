"""Weight-only 4-bit quantization for CPU inference, on PyTorch's int4 packed-matmul kernel.

Each eligible nn.Linear keeps its weight as 4-bit codes with one scale and one zero per group of
`group_size` inputs (asymmetric: w = (q - 8) * scale + zero, q in 0..15), packed by
`torch.ops.aten._convert_weight_to_int4pack_for_cpu` and multiplied by `_weight_int4pack_mm_for_cpu`
(the layout of torchao's / gpt-fast's int4 weight-only path). The kernel computes in bfloat16: fp32
activations are cast for the matmul, as `Int8Linear` does. Decoding reads half the bytes of int8.

Rounding: a group whose values already lie on a grid of 16 evenly spaced levels (a GGUF file's Q4_0, Q4_1 or
Q4_K blocks, dequantized, with groups of 32) keeps that grid (codes, step and offset recovered exactly), so a
4-bit file is not rounded to 4 bits a second time; its scale and zero are then only rounded to bfloat16.
Any other group is rounded to nearest between its min and max. The LM head (tied or not) is kept in int8: it sets
every logit, and 4-bit rounding of a vocabulary-sized matrix that no file stored in 4 bits costs far more than
its share of the bytes saves. A layer the kernel cannot take (outputs not a multiple of 16, inputs not a
multiple of the group) falls back to `Int8Linear` too.
"""

from __future__ import annotations

import torch
from torch import nn

from .int8 import Int8Linear

GROUP_SIZE = 32  # GGUF's block size: the groups of a 4-bit file's blocks
LEVELS = 15
CHUNK_ROWS = 4096  # rows quantized at a time: bounds the temporaries of a vocabulary-sized head
_PACK = getattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu", None)
_MATMUL = getattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu", None)


def available() -> bool:
    """Whether this PyTorch has the CPU int4 kernels (2.5 and later)."""
    return _PACK is not None and _MATMUL is not None


def quantize_groups(weight: torch.Tensor, group_size: int = GROUP_SIZE
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes (N, K) int32 in 0..15, scale (N, K/g), zero (N, K/g)) with w ~ (q - 8) * scale + zero, each group
    kept on its own 16-level grid where it has one, else rounded to nearest between its min and max."""
    rows, columns = weight.shape
    groups = weight.detach().float().reshape(rows, columns // group_size, group_size)  # (N, G, g)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / LEVELS).clamp(min=1e-12)  # min/max rounding
    step = _grid_step(groups, low)
    spanned = (high - low) / step.clamp(min=1e-30)
    on_grid = (step > 0) & (spanned <= LEVELS + 1e-3)
    if bool(on_grid.any()):
        exact = torch.round((groups - low[..., None]) / step[..., None].clamp(min=1e-30))
        error = ((groups - low[..., None]) / step[..., None].clamp(min=1e-30) - exact).abs().amax(-1)
        on_grid &= error < 1e-3
        scale = torch.where(on_grid, step, scale)
    codes = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, LEVELS).to(torch.int32)
    zero = low + 8 * scale  # w = low + q * scale = (q - 8) * scale + zero
    return codes.reshape(rows, columns), scale, zero


def _grid_step(groups: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """The smallest gap between distinct values of each group (0 for a constant group): the step of its grid if
    it has one (a group of 32 values on 16 levels nearly always uses two neighbouring levels)."""
    ordered = groups.sort(-1).values
    gaps = ordered[..., 1:] - ordered[..., :-1]
    tiny = 1e-5 * (ordered[..., -1:] - ordered[..., :1]).abs()  # float noise of the dequantization, not a level
    gaps = torch.where(gaps > tiny, gaps, torch.full_like(gaps, float("inf")))
    step = gaps.amin(-1)
    return torch.where(torch.isfinite(step), step, torch.zeros_like(step))


class Int4Linear(nn.Module):
    """y = x W^T + b with W as packed 4-bit codes (N, K/2) and bfloat16 scales and zeros (K/g, N, 2)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, group_size: int = GROUP_SIZE):
        super().__init__()
        parts = [quantize_groups(weight[start:start + CHUNK_ROWS], group_size)
                 for start in range(0, weight.shape[0], CHUNK_ROWS)]
        codes, scale, zero = (torch.cat(columns) for columns in zip(*parts, strict=True))
        self.register_buffer("weight_int4", _PACK(codes.contiguous(), 1))
        scales_and_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()  # (K/g, N, 2)
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(torch.bfloat16))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features, self.group_size = weight.shape[1], weight.shape[0], group_size

    @staticmethod
    def fits(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> bool:
        """Whether the kernel takes a weight of this shape (and device)."""
        rows, columns = weight.shape
        return available() and weight.device.type == "cpu" and rows % 16 == 0 and columns % group_size == 0

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies by, (N, K) float32 (for tests and error reports)."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        return _MATMUL(eye, self.weight_int4, self.group_size, self.scales_and_zeros).float().t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        y = _MATMUL(x2, self.weight_int4, self.group_size, self.scales_and_zeros).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4 weights, "
                f"groups of {self.group_size}")


def _quantized(weight: torch.Tensor, bias: torch.Tensor | None, group_size: int) -> nn.Module:
    if Int4Linear.fits(weight, group_size):
        return Int4Linear(weight, bias, group_size)
    return Int8Linear(weight, bias)


def quantize_int4(model: nn.Module, group_size: int = GROUP_SIZE) -> nn.Module:
    """Replace every nn.Linear of the blocks with Int4Linear (Int8Linear where the kernel cannot take the shape)
    and the LM head, tied or not, with Int8Linear, in place; inference only."""
    if not available():
        raise RuntimeError(f"quantize='int4' needs PyTorch's CPU int4 kernels (PyTorch >= 2.5; this is "
                           f"{torch.__version__})")
    head = getattr(model, "lm_head", None)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                quantized = Int8Linear.from_linear(child) if child is head else \
                    _quantized(child.weight, child.bias, group_size)
                setattr(module, child_name, quantized)
    if getattr(model, "head", None) == "lm" and head is None:
        model.lm_head = Int8Linear(model.embed_tokens.weight)  # a tied head: its own copy; the embedding stays float
    model.quantized = "int4"
    return model.eval()


