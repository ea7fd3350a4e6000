"""The feed-forward block: up -> activation -> down, or gated (T5 v1.1, Llama's SwiGLU, Gemma's GeGLU).

A gated MLP computes act(x W_gate) * (x W_up) (Shazeer 2020, "GLU Variants Improve Transformer"); its
gate and up projections are one fused matrix `gate_up` (rows gate | up), so a token costs one matmul there,
not two; dialects split and join the checkpoint's two (or Phi-3's already fused one) in their weight table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from .dropout import Dropout
from .linear import Linear

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        H, inner, bias = config.hidden_size, config.intermediate_size, config.layer_bias("mlp")
        self.inner = inner
        if config.gated_mlp:
            self.gate_up = Linear(H, 2 * inner, bias=bias)
            self.up = None
        else:
            self.up = Linear(H, inner, bias=bias)
            self.gate_up = None
        self.down = Linear(inner, H, bias=bias)
        self.act = ACTIVATIONS[config.activation]
        # only T5 and BART drop inside the MLP; a no-op module would still cost a call per layer
        self.drop = Dropout(config.activation_dropout) if config.activation_dropout else None
        self.down_fp32 = config.mlp_down_fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up(x).split(self.inner, dim=-1)
            h = self._gated(gate, up)
        else:
            h = self.act(self.up(x))
        if self.drop is not None:
            h = self.drop(h)
        # T5 keeps `wo` in fp32 (an int8 `wo` has no float weight: it computes in the input's dtype)
        down = getattr(self.down, "weight", None)
        if self.down_fp32 and down is not None and h.dtype != down.dtype:
            return self.down(h.to(down.dtype)).to(x.dtype)
        return self.down(h)

    def _gated(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """act(gate) * up. Where a gradient is wanted, backward recomputes act(gate) (`torch.utils.checkpoint`)
        rather than keeping it beside gate and up, which are views of gate_up's output kept anyway: one
        (B, T, inner) tensor fewer per layer held from forward to backward, for one activation recomputed."""
        if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
            return checkpoint(_act_times, self.act, gate, up, use_reentrant=False, preserve_rng_state=False)
        return _act_times(self.act, gate, up)


def _act_times(act, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return act(gate) * up
