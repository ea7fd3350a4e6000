"""Multi-head attention on `scaled_dot_product_attention`, with grouped-query heads and a preallocated KV cache.

Self-attention projects q, k and v with one fused matrix (`qkv`, rows q | k | v); cross-attention projects q
from the decoder and k, v (fused `kv`) from the encoder output, once per generation (cached in
`KVCache.cross`). Every position bias, padding, causality and a sliding window arrive as one additive float
mask (prepared once per call, see masks.py), and rotary positions as cos / sin slices of tables prepared
once per call (rotary.py), so the module is the same for BERT, GPT-2, BLOOM, T5, BART and the Llama-shaped
decoders. Options, as transformers' modeling files have them: fewer key/value heads than query heads
(grouped-query / multi-query attention, Ainslie et al. 2023; the cache holds only the kv heads), an RMS
norm over head_dim on q and k before the rotation (Qwen3, Gemma 3), an explicit score scale (Gemma 2's
`query_pre_attn_scalar`), and a tanh softcap on the scores (Gemma 2).

`eager_attention` computes the attention itself, as transformers' `eager_attention_forward` does (scores in
the inputs' dtype, softmax in fp32 under half precision, probabilities returned): the path for what SDPA
cannot do (a softcap) and for training with attention dropout on CPU (SDPA's fused CPU kernels take no
dropout, and its fallback draws the mask slowly).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import record
from .dropout import dropout, keep_mask, scaled
from .kv_cache import KVCache
from .linear import Linear
from .rotary import apply_rotary

__all__ = ["Attention", "KVCache", "causal_keep", "eager_attention"]


def causal_keep(T: int, Tk: int, device: torch.device | str) -> torch.Tensor:
    """(T, Tk) bool: the last T of Tk positions may each attend to keys up to their own position."""
    return torch.ones(T, Tk, dtype=torch.bool, device=device).tril(Tk - T)


class Attention(nn.Module):
    """Self- (or cross-) attention. kv_heads: key/value heads (None: num_heads); qkv_bias / out_bias: the
    projections' biases (None: `bias`); qk_norm: makes the norm of q and k over head_dim (None: none);
    scale: multiply scores by 1/sqrt(head_dim) (`scale_value` replaces it); softcap: c * tanh(s / c) on the
    scores; window: the sliding window of this layer (read by the KV cache)."""

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, bias: bool, scale: bool,
                 dropout: float, cross: bool = False, *, kv_heads: int | None = None, qkv_bias: bool | None = None,
                 out_bias: bool | None = None, qk_norm: Callable[[int], nn.Module] | None = None,
                 scale_value: float | None = None, softcap: float | None = None, window: int | None = None):
        super().__init__()
        kv_heads = kv_heads or num_heads
        self.num_heads, self.kv_heads, self.head_dim, self.cross = num_heads, kv_heads, head_dim, cross
        self.scale = scale_value if scale_value is not None else (None if scale else 1.0)  # None: 1/sqrt(hd)
        self.dropout, self.softcap, self.window = dropout, softcap, window
        qkv_bias = bias if qkv_bias is None else qkv_bias
        if cross:
            inner = num_heads * head_dim
            self.q = Linear(hidden_size, inner, bias=qkv_bias)
            self.kv = Linear(hidden_size, 2 * inner, bias=qkv_bias)
            self.q.is_cross_query = True  # T5's init scales queries differently (models/base.py)
        else:
            self.qkv = Linear(hidden_size, (num_heads + 2 * kv_heads) * head_dim, bias=qkv_bias)
            self.qkv.is_fused_qkv = True  # T5's init scales its query rows (models/base.py)
        self.q_norm = qk_norm(head_dim) if qk_norm is not None else None
        self.k_norm = qk_norm(head_dim) if qk_norm is not None else None
        self.out = Linear(num_heads * head_dim, hidden_size, bias=bias if out_bias is None else out_bias)

    @property
    def cache_shape(self) -> tuple[int, int]:
        """(heads, head_dim) of the keys and values this module stores in a KV cache."""
        return self.kv_heads, self.head_dim

    def _heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        B, T, _ = x.shape
        x = x.view(B, T, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (parts, B, nh, T, hd)
        return tuple(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *, is_causal: bool = False,
                context: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0,
                position: int | torch.Tensor = 0,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, T, H); mask: additive float (B|1, nh|1, T, Tk) or None; context: encoder output;
        position: where in the cache the T new keys and values go (see `KVCache.update`); rotary: the
        (cos, sin) of the T positions (B|1, 1, T, rot), or None."""
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
            q, k, v = self._project(x, rotary)
            if cache is not None:
                k, v = cache.update(layer, k, v, position)
        y = self._attend(q, k, v, mask, is_causal)  # (B, nh, T, hd)
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))

    def _project(self, x: torch.Tensor, rotary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, nh, T, hd), k and v (B, kv, T, hd): views of one fused matmul, normed and rotated."""
        B, T, _ = x.shape
        nh, kv = self.num_heads, self.kv_heads
        heads = self.qkv(x).view(B, T, nh + 2 * kv, self.head_dim).transpose(1, 2)  # (B, nh + 2kv, T, hd)
        q, k, v = heads.split((nh, kv, kv), dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            if self.q_norm is None:  # q and k side by side in the fused output: rotate them in one go
                q, k = apply_rotary(heads[:, :nh + kv], *rotary).split((nh, kv), dim=1)
            else:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        return q, k, v

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool) -> torch.Tensor:
        training_dropout = self.training and self.dropout > 0
        recorder = record.current()  # None unless the call asked for attention weights or eager attention
        if recorder is not None and recorder.eager:
            y, weights = eager_attention(q, k, v, mask, scale=self.scale, is_causal=is_causal and mask is None,
                                         softcap=self.softcap, dropout_p=self.dropout if training_dropout else 0.0)
            record.record_attention(weights, self.cross)
            return y
        if self.softcap is not None:
            return eager_attention(q, k, v, mask, scale=self.scale, is_causal=is_causal and mask is None,
                                   softcap=self.softcap, dropout_p=self.dropout if training_dropout else 0.0)[0]
        if training_dropout and q.device.type == "cpu":
            return _attention_with_dropout(q, k, v, mask, is_causal and mask is None, self.scale, self.dropout)
        p = self.dropout if self.training else 0.0
        groups = self.num_heads // self.kv_heads
        B, nh, T, hd = q.shape
        if groups > 1 and T == 1 and (mask is None or mask.shape[1] == 1):
            # one query per head: the g heads sharing a kv head are g query rows against it (no copy of k, v);
            # a single query reads a prefix or a masked static cache, so causality needs nothing here
            y = F.scaled_dot_product_attention(q.reshape(B, self.kv_heads, groups, hd), k, v, attn_mask=mask,
                                               dropout_p=p, scale=self.scale)
            return y.view(B, nh, 1, hd)
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                              is_causal=is_causal and mask is None,
                                              scale=self.scale)  # (B, nh, T, hd)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
                    scale: float | None = None, is_causal: bool = False, softcap: float | None = None,
                    dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (B, nh, T, hd), probabilities (B, nh, T, Tk)) of q (B, nh, T, hd) over k, v (B, kv, Tk, hd).

    As transformers' `eager_attention_forward` (Gemma 2's with `softcap`): kv heads repeated for their query
    groups, scores = q.k * scale (1/sqrt(hd) by default), softcap c * tanh(scores / c), then the additive mask
    (or causality), softmax (in fp32 under half precision), dropout on the probabilities, times v.
    """
    probs, v = _probabilities(q, k, v, mask, scale, is_causal, softcap)
    if dropout_p > 0:
        probs = dropout(probs, dropout_p, True)
    return torch.matmul(probs.to(v.dtype), v), probs


def _probabilities(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                   scale: float | None, is_causal: bool, softcap: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`eager_attention`'s probabilities (B, nh, T, Tk) before dropout, and v with its heads repeated."""
    scores, _, v = _scores(q, k, v, mask, scale, is_causal, softcap)
    return _softmax(scores).to(scores.dtype), v


def _scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float | None,
            is_causal: bool, softcap: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked scores (B, nh, T, Tk), k and v with their heads repeated for the query groups)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) * _scale(q, scale)  # (B, nh, T, Tk)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if is_causal:
        scores = torch.where(causal_keep(*scores.shape[-2:], q.device), scores, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask.to(scores.dtype)  # bf16 under autocast, as SDPA's own inputs would be
    return scores, k, v


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale  # None: 1/sqrt(head_dim)


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """The probabilities, in fp32 under half precision (as transformers' eager attention)."""
    half = scores.dtype in (torch.float16, torch.bfloat16)
    return torch.softmax(scores, dim=-1, dtype=torch.float32 if half else None)


def _attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                            is_causal: bool, scale: float | None, p: float) -> torch.Tensor:
    """`eager_attention(..., dropout_p=p)[0]` (the same values: its probabilities, one dropout mask), keeping
    for backward only q, k, v (views of the projection's output), the additive mask and the bool dropout mask:
    backward recomputes the probabilities from them (flash attention's trade) instead of holding a float
    (B, nh, T, Tk) tensor per layer, and matmul's contiguous copies of q and k, from forward to backward
    (GPT-2's 4x256 batch: 19 MB a layer, for one q k^T and softmax more in backward)."""
    keep = keep_mask((*q.shape[:-1], k.shape[-2]), p)  # (B, nh, T, Tk)
    return _DropoutAttention.apply(q, k, v, mask, keep, is_causal, scale, 1.0 / (1.0 - p))


class _DropoutAttention(torch.autograd.Function):
    """dropout(softmax(q k^T * scale + mask)) @ v with the dropout mask given; backward recomputes the scores and
    probabilities (under forward's autocast state, so they are forward's values) and applies the chain rule that
    autograd would through eager attention's ops."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                keep: torch.Tensor, is_causal: bool, scale: float | None, factor: float) -> torch.Tensor:
        ctx.save_for_backward(q, k, v, mask, keep)
        ctx.is_causal, ctx.scale, ctx.factor = is_causal, scale, factor
        probs, v = _probabilities(q, k, v, mask, scale, is_causal, None)
        probs = probs.to(v.dtype)
        return torch.matmul(probs * scaled(keep, probs.dtype, factor), v)  # dropout(probs) @ v, as `dropout`

    @staticmethod
    @once_differentiable  # a second derivative would need the recomputed graph
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: torch.Tensor):
        q, k, v, mask, keep = ctx.saved_tensors
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # each read by several matmuls below: copied once
        scores, k_all, v_all = _scores(q, k, v, mask, ctx.scale, ctx.is_causal, None)
        full = _softmax(scores)  # fp32 under half precision
        probs = full.to(scores.dtype).to(v_all.dtype)
        kept = scaled(keep, probs.dtype, ctx.factor)
        grad_v = torch.matmul((probs * kept).transpose(-2, -1), grad)  # (B, nh, Tk, hd)
        grad_probs = torch.matmul(grad, v_all.transpose(-2, -1)).mul_(kept)  # (B, nh, T, Tk)
        grad_scores = torch._softmax_backward_data(grad_probs.to(full.dtype), full, -1, full.dtype)
        grad_scores = grad_scores.to(scores.dtype).mul_(_scale(q, ctx.scale))
        grad_q = torch.matmul(grad_scores, k_all)  # (B, nh, T, hd)
        grad_k = torch.matmul(grad_scores.transpose(-2, -1), q)  # (B, nh, Tk, hd)
        groups = q.shape[1] // k.shape[1]
        if groups > 1:  # the repeated heads' gradients summed onto their kv head
            grad_k = grad_k.unflatten(1, (k.shape[1], groups)).sum(2)
            grad_v = grad_v.unflatten(1, (k.shape[1], groups)).sum(2)
        return (grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None, None, None, None)
