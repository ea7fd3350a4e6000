"""Multi-head attention on `scaled_dot_product_attention`, with a preallocated KV cache.

Self-attention projects q, k and v with one fused matrix (`qkv`); cross-attention projects q from the
decoder and k, v (fused `kv`) from the encoder output, once per generation (cached in `KVCache.cross`).
Every position scheme, padding and causality arrive as one additive float mask (prepared once per
call, see masks.py), so the module is the same for BERT, GPT-2, BLOOM, T5 and BART. Training with
attention dropout on CPU computes the attention itself (SDPA's fused CPU kernels take no dropout,
and its fallback draws the mask slowly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import dropout
from .linear import Linear


def causal_keep(T: int, Tk: int, device: torch.device | str) -> torch.Tensor:
    """(T, Tk) bool: the last T of Tk positions may each attend to keys up to their own position."""
    return torch.ones(T, Tk, dtype=torch.bool, device=device).tril(Tk - T)


class KVCache:
    """Keys and values of past positions, preallocated for the whole generation.

    `k[layer]` is (B, heads, max_length, head_dim). A step writes its new positions in place at a
    position index: an int (a slice assignment) or a `cache_position` tensor (T,) (`index_copy_`, no
    host integer needed). Attention then reads the written prefix `[:length]` as a view (the CPU path:
    no concatenation, no wasted keys), or with `static=True` all `max_length` slots, unwritten ones
    hidden by the causal mask (`MaskPlan`), so that every step has the same shapes (a GPU step can be
    captured once as a graph). `length` counts the positions written so far.
    """

    def __init__(self, num_layers: int, batch: int, heads: int, head_dim: int, max_length: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu", *, static: bool = False):
        shape = (num_layers, batch, heads, max_length, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0  # positions already stored
        self.max_length, self.static = max_length, static
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    @classmethod
    def for_layers(cls, attentions: list[Attention], batch: int, max_length: int, dtype: torch.dtype,
                   device: torch.device | str = "cpu", *, static: bool = False) -> KVCache:
        """A cache sized by the self-attention modules of one stack (their cached heads and head size),
        not by the config, whose head count need not be the stack's."""
        shapes = {attention.cache_shape for attention in attentions}
        if len(shapes) != 1:
            raise ValueError(f"one KV cache holds layers of one shape (heads, head_dim), got {sorted(shapes)}")
        (heads, head_dim), = shapes
        return cls(len(attentions), batch, heads, head_dim, max_length, dtype, device, static=static)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               position: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, heads, T, head_dim) at `position` (the first new one, or (T,) positions) and
        return what attention reads: the prefix up to the new positions, or every slot if static."""
        T = k.shape[2]
        if isinstance(position, torch.Tensor):
            self.k[layer].index_copy_(2, position, k)
            self.v[layer].index_copy_(2, position, v)
            end = self.length + T
        else:
            end = position + T
            if end > self.max_length:
                raise RuntimeError(f"KV cache full: {end} positions needed, {self.max_length} allocated")
            self.k[layer, :, :, position:end] = k
            self.v[layer, :, :, position:end] = v
        if self.static:
            return self.k[layer], self.v[layer]
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the cache of the beams it keeps); a static cache keeps its
        buffers (their addresses) when the batch size stays."""
        k, v = self.k.index_select(1, index), self.v.index_select(1, index)
        if self.static and k.shape == self.k.shape:
            self.k.copy_(k)
            self.v.copy_(v)
        else:
            self.k, self.v = k, v
        self.cross = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                      for kv in self.cross]


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, bias: bool, scale: bool,
                 dropout: float, cross: bool = False):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.cross = num_heads, head_dim, cross
        self.scale = None if scale else 1.0  # None: SDPA's 1/sqrt(head_dim)
        self.dropout = dropout
        if cross:
            self.q = Linear(hidden_size, inner, bias=bias)
            self.kv = Linear(hidden_size, 2 * inner, bias=bias)
            self.q.is_cross_query = True  # T5's init scales queries differently (models/base.py)
        else:
            self.qkv = Linear(hidden_size, 3 * inner, bias=bias)
        self.out = Linear(inner, hidden_size, bias=bias)

    @property
    def cache_shape(self) -> tuple[int, int]:
        """(heads, head_dim) of the keys and values this module stores in a KV cache."""
        return self.num_heads, self.head_dim

    def _heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        B, T, _ = x.shape
        x = x.view(B, T, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (parts, B, nh, T, hd)
        return tuple(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *, is_causal: bool = False,
                context: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0,
                position: int | torch.Tensor = 0) -> torch.Tensor:
        """x: (B, T, H); mask: additive float (B|1, nh|1, T, Tk) or None; context: encoder output;
        position: where in the cache the T new keys and values go (see `KVCache.update`)."""
        if self.cross:
            (q,) = self._heads(self.q(x), 1)
            cached = cache.cross[layer] if cache is not None else None
            if cached is None:
                k, v = self._heads(self.kv(context), 2)
                if cache is not None:
                    cache.cross[layer] = (k, v)
            else:
                k, v = cached
        else:
            q, k, v = self._heads(self.qkv(x), 3)
            if cache is not None:
                k, v = cache.update(layer, k, v, position)
        if self.training and self.dropout > 0 and q.device.type == "cpu":
            y = _attention_with_dropout(q, k, v, mask, is_causal and mask is None, self.scale, self.dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal and mask is None, scale=self.scale,
            )  # (B, nh, T, hd)
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


def _attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                            is_causal: bool, scale: float | None, p: float) -> torch.Tensor:
    """Attention with dropout on the probabilities, as SDPA's math path computes it on CPU (where its
    fused kernels take no dropout), but with the mask drawn by `layers.dropout` (~1.5x faster than
    SDPA's bernoulli: 240 -> ~150 ms of a GPT-2 4 x 256 training step)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, nh, T, Tk)
    if is_causal:
        scores = torch.where(causal_keep(*scores.shape[-2:], q.device), scores, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask.to(scores.dtype)  # bf16 under autocast, as SDPA's own inputs would be
    probs = dropout(torch.softmax(scores, dim=-1), p, True)
    return torch.matmul(probs.to(v.dtype), v)
