"""The MLP, the transformer block, and the stack of blocks every family is built from.

A `Stack` is an encoder (bidirectional), a decoder (causal), or a decoder with cross-attention; its
flags come from ModelConfig: norm placement (post: BERT/BART; pre: GPT-2/BLOOM/T5), positions
(learned table, T5 relative buckets, ALiBi), embedding norm, final norm. Token embeddings belong to
the model, so that an encoder-decoder can share one matrix between its two stacks and the LM head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .attention import Attention, KVCache
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .masks import MaskPlan, padding_bias
from .norms import make_norm
from .positions import RelativePositionBias, alibi_bias

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        H, inner = config.hidden_size, config.intermediate_size
        self.up = Linear(H, inner, bias=config.bias)
        self.gate = Linear(H, inner, bias=config.bias) if config.gated_mlp else None
        self.down = Linear(inner, H, bias=config.bias)
        self.act = ACTIVATIONS[config.activation]
        # only T5 and BART drop inside the MLP; a no-op module would still cost a call per layer
        self.drop = Dropout(config.activation_dropout) if config.activation_dropout else None
        self.down_fp32 = config.mlp_down_fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        if self.drop is not None:
            h = self.drop(h)
        if self.down_fp32 and h.dtype != self.down.weight.dtype:  # T5 keeps `wo` in fp32
            return self.down(h.to(self.down.weight.dtype)).to(x.dtype)
        return self.down(h)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, cross: bool = False):
        super().__init__()
        norm = lambda: make_norm(config.norm, config.hidden_size, config.norm_eps, config.bias)  # noqa: E731
        head_dim = config.attention_head_dim
        self.attn = Attention(config.hidden_size, config.num_heads, head_dim, config.bias,
                              config.scale_attention, config.attention_dropout)
        self.attn_norm = norm()
        if cross:
            self.cross_attn = Attention(config.hidden_size, config.num_heads, head_dim, config.bias,
                                        config.scale_attention, config.attention_dropout, cross=True)
            self.cross_norm = norm()
        else:
            self.cross_attn = None
        self.mlp = MLP(config)
        self.mlp_norm = norm()
        self.pre_norm = config.norm_placement == "pre"
        self.drop = Dropout(config.dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, sublayer) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(sublayer(norm(x)))
        return norm(x + self.drop(sublayer(x)))

    def forward(self, x, mask, *, is_causal=False, context=None, context_mask=None, cache=None, layer=0, position=0):
        x = self._residual(x, self.attn_norm, lambda h: self.attn(h, mask, is_causal=is_causal, cache=cache,
                                                                  layer=layer, position=position))
        if self.cross_attn is not None:
            x = self._residual(x, self.cross_norm,
                               lambda h: self.cross_attn(h, context_mask, context=context, cache=cache, layer=layer))
        return self._residual(x, self.mlp_norm, self.mlp)


class Stack(nn.Module):
    """Embedding extras + blocks + final norm; an encoder, a decoder, or a decoder with cross-attention."""

    def __init__(self, config: ModelConfig, num_layers: int, causal: bool, cross: bool = False):
        super().__init__()
        H = config.hidden_size
        self.config, self.causal = config, causal
        self.positions = (Embedding(config.max_positions + config.position_offset, H)
                          if config.positions == "learned" else None)
        self.token_types = Embedding(config.type_vocab_size, H) if config.type_vocab_size else None
        self.embed_norm = (make_norm(config.norm, H, config.norm_eps, config.bias)
                           if config.embedding_norm else None)
        self.rel_bias = (RelativePositionBias(config.relative_buckets, config.relative_max_distance,
                                              config.num_heads, bidirectional=not causal)
                         if config.positions == "relative" else None)
        self.layers = nn.ModuleList(Block(config, cross) for _ in range(num_layers))
        self.final_norm = make_norm(config.norm, H, config.norm_eps, config.bias) if config.final_norm else None
        embedding_dropout = config.dropout if config.embedding_dropout is None else config.embedding_dropout
        self.embed_drop = Dropout(embedding_dropout)
        self.drop = Dropout(config.dropout if config.final_norm_dropout else 0.0)  # after the final norm (T5)

    def position_ids(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                     T: int, past: int, device: torch.device) -> torch.Tensor:
        config = self.config
        if config.positions_from_padding:  # RoBERTa: count non-pad tokens, start after pad id
            if input_ids is None:
                raise ValueError("positions counted from padding need input_ids")
            keep = input_ids.ne(config.pad_token_id).long()
            return (keep.cumsum(1) + past) * keep + config.pad_token_id
        return torch.arange(past, past + T, device=device)[None, :] + config.position_offset

    def embed(self, embeds: torch.Tensor, input_ids=None, attention_mask=None, token_type_ids=None,
              position_ids=None, past: int = 0) -> torch.Tensor:
        """Token embeddings (B, T, H) -> block input: scale, add positions and types, norm, dropout."""
        B, T, _ = embeds.shape
        x = embeds * self.config.embedding_scale if self.config.embedding_scale != 1.0 else embeds
        if self.positions is not None:
            if position_ids is None:
                position_ids = self.position_ids(input_ids, attention_mask, T, past, embeds.device)
            x = x + self.positions(position_ids)
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(B, T, dtype=torch.long, device=embeds.device)
            x = x + self.token_types(token_type_ids)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.embed_drop(x)

    def plan(self, batch: int, length: int, dtype: torch.dtype, device: torch.device | str, *,
             attention_mask: torch.Tensor | None = None, padded: bool | None = None,
             position_ids: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
             context_padded: bool | None = None) -> MaskPlan:
        """The masks of one call over `length` positions (see masks.py), for every step of it.

        attention_mask: (B, length) 1 = keep, or None; padded / context_padded: whether a mask has a 0,
        when the caller knows (otherwise it is read from the device, once); position_ids: (B|1, length)
        for a learned position table, sliced per step (without them each step counts its own). Head
        counts come from the stack's modules.
        """
        if attention_mask is not None and padded is None:
            padded = not bool(attention_mask.all())
        if context_mask is not None and context_padded is None:
            context_padded = not bool(context_mask.all())
        key_bias = relative = None
        if self.config.positions == "alibi":
            keep = attention_mask if attention_mask is not None else torch.ones(batch, length, dtype=torch.long,
                                                                                 device=device)
            key_bias = alibi_bias(keep, self.layers[0].attn.num_heads, dtype)  # (B, nh, 1, length)
            if padded:
                key_bias = torch.where(keep[:, None, None, :].bool(), key_bias, torch.finfo(dtype).min)
        elif padded:
            key_bias = padding_bias(attention_mask, dtype)  # (B, 1, 1, length)
        if self.rel_bias is not None:
            relative = self.rel_bias(length).to(dtype)  # (nh, 2 * length - 1)
        cross = padding_bias(context_mask, dtype) if context_padded else None  # (B, 1, 1, S)
        return MaskPlan(length, self.causal, dtype, device, key_bias=key_bias, relative=relative, cross=cross,
                        position_ids=position_ids)

    def forward(self, embeds: torch.Tensor, *, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, context=None, context_mask=None, cache: KVCache | None = None,
                plan: MaskPlan | None = None, cache_position: torch.Tensor | None = None) -> torch.Tensor:
        """embeds: (B, T, H) token embeddings; returns (B, T, H).

        Without a `plan`, the masks are prepared here from attention_mask (B, past + T) (1 = keep) and
        context_mask (B, S); a caller that feeds several steps (generation) prepares one plan for all
        of them and passes it instead. With a cache, the new keys go to `cache_position` (T,) or, by
        default, after the `cache.length` stored ones.
        """
        B, T, _ = embeds.shape
        past = cache.length if cache is not None else 0
        position = cache_position if cache_position is not None else past
        static = cache is not None and cache.static
        if plan is not None and position_ids is None:
            position_ids = plan.positions(position, T)
        x = self.embed(embeds, input_ids, attention_mask, token_type_ids, position_ids, past)
        if plan is None:
            length = cache.max_length if static else past + T
            if attention_mask is not None and attention_mask.shape[1] < length:  # unwritten slots: hidden as future
                attention_mask = F.pad(attention_mask, (0, length - attention_mask.shape[1]), value=1)
            plan = self.plan(B, length, x.dtype, x.device, attention_mask=attention_mask,
                             context_mask=context_mask if context is not None else None)
        # one mask for every layer (issue 15: layers of another kind would each take the plan's mask of their kind)
        mask, is_causal = plan.self_attention(position, T, static)
        for i, block in enumerate(self.layers):
            x = block(x, mask, is_causal=is_causal, context=context, context_mask=plan.cross, cache=cache, layer=i,
                      position=position)
        if cache is not None:
            cache.advance(T)
        if self.final_norm is not None:
            x = self.drop(self.final_norm(x))
        return x
