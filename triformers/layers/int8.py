"""Weight-only int8 quantization for inference.

Each nn.Linear of the blocks (and the LM head, tied or not) keeps its weight as int8 with one fp scale
per output channel (symmetric, round to nearest), and activations stay in floating point; decoding is
bound by the bytes of weights read per token, so a quarter of fp32's bytes is what makes it faster.
The matmul uses `torch._weight_int8pack_mm` (PyTorch's CPU/CUDA kernel for exactly this layout) where it
exists, else dequantizes on the fly. Quality cost: see `bench/` and the README (held-out perplexity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_KERNEL = getattr(torch, "_weight_int8pack_mm", None)
_BF16_KERNEL = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 (N, K) and a per-row scale (N,)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = weight.detach().float().contiguous()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if torch.is_grad_enabled() and x2.requires_grad:  # a frozen base under an adapter: gradients flow to x
            y = _Int8Matmul.apply(x2, self.weight_int8, self.scale)
        else:
            y = _int8_matmul(x2, self.weight_int8, self.scale)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _int8_matmul(x2: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(M, K) x (N, K) int8 with per-row scales -> (M, N) in x's dtype."""
    if _KERNEL is not None and x2.dtype in (torch.float32, torch.bfloat16, torch.float16):
        # on CPU the kernel is fast for bf16 activations and far slower for fp32 ones (README, int8 notes):
        # run fp32 inputs through it in bf16, which costs far less precision than the int8 weights do
        compute = torch.bfloat16 if x2.dtype == torch.float32 and _BF16_KERNEL and x2.device.type == "cpu" \
            else x2.dtype
        return _KERNEL(x2.to(compute).contiguous(), weight_int8, scale.to(compute)).to(x2.dtype)
    return F.linear(x2, weight_int8.to(x2.dtype) * scale.to(x2.dtype)[:, None])


class _Int8Matmul(torch.autograd.Function):
    """`_int8_matmul` with a gradient for its input (the int8 weights stay frozen): grad_x = (grad * scale) @ W,
    with W dequantized one layer at a time in the backward, so that LoRA can train over an int8 base."""

    @staticmethod
    def forward(ctx, x2: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight_int8, scale)
        return _int8_matmul(x2, weight_int8, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight_int8, scale = ctx.saved_tensors
        compute = grad.dtype
        grad_x = (grad * scale.to(compute)) @ weight_int8.to(compute)  # (M, N) x (N, K)
        return grad_x, None, None


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (and a tied LM head) with Int8Linear, in place; inference only."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear.from_linear(child))
    if getattr(model, "head", None) == "lm" and getattr(model, "lm_head", None) is None:
        # a tied head reads the embedding matrix; give it its own quantized copy (the embedding stays float)
        model.lm_head = Int8Linear(model.embed_tokens.weight)
    model.quantized = "int8"
    return model.eval()
