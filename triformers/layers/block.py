"""The transformer block, and the stack of blocks every family is built from.

A `Stack` is an encoder (bidirectional), a decoder (causal), or a decoder with cross-attention; its
flags come from ModelConfig: norm placement (post: BERT/BART/OPT-350m; pre: GPT-2/BLOOM/T5/Llama), extra
norms after each sub-layer (Gemma 2/3's sandwich), parallel attention and MLP (GPT-NeoX), positions
(learned table, T5 relative buckets, ALiBi, rotary), embedding norm and scale, projections between a
narrower embedding and the hidden width (OPT's `project_in` / `project_out`), final norm. Layers of a
sliding window (Mistral, Gemma 2/3) take the mask of their kind and, with local rotary, their own tables.
Token embeddings belong to the model, so that an encoder-decoder can share one matrix between its two
stacks and the LM head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import record

from ..config import ModelConfig
from .attention import Attention
from .dropout import Dropout
from .embedding import Embedding
from .kv_cache import KVCache
from .linear import Linear
from .masks import MaskPlan, padding_bias
from .mlp import ACTIVATIONS, MLP
from .norms import make_norm
from .positions import RelativePositionBias, alibi_bias
from .rotary import Rotary

__all__ = ["ACTIVATIONS", "MLP", "Block", "Stack"]


def norm_of(config: ModelConfig, dim: int) -> nn.Module:
    """The config's norm over `dim` features."""
    return make_norm(config.norm, dim, config.norm_eps, config.bias, config.norm_unit_offset)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, cross: bool = False, layer: int = 0):
        super().__init__()
        norm = lambda: norm_of(config, config.hidden_size)  # noqa: E731
        head_dim, sliding = config.attention_head_dim, config.sliding_layer(layer)
        self.kind = "sliding" if sliding else "full"  # which of the plan's masks this layer takes
        self.rope = "local" if sliding and config.local_rope_theta is not None else "global"
        qk_norm = (lambda dim: norm_of(config, dim)) if config.qk_norm else None
        self.attn = Attention(config.hidden_size, config.num_heads, head_dim, config.bias, config.scale_attention,
                              config.attention_dropout, kv_heads=config.num_kv_heads,
                              qkv_bias=config.layer_bias("qkv"), out_bias=config.layer_bias("out"), qk_norm=qk_norm,
                              scale_value=config.attention_scale, softcap=config.attention_softcap,
                              window=config.sliding_window if sliding else None)
        self.attn_norm = norm()
        if cross:
            self.cross_attn = Attention(config.hidden_size, config.num_heads, head_dim, config.bias,
                                        config.scale_attention, config.attention_dropout, cross=True)
            self.cross_norm = norm()
        else:
            self.cross_attn = None
        self.mlp = MLP(config)
        self.mlp_norm = norm()
        # Gemma 2/3 norm each sub-layer's output too, before it joins the residual stream
        self.attn_post_norm = norm() if config.sandwich_norm else None
        self.mlp_post_norm = norm() if config.sandwich_norm else None
        self.pre_norm = config.norm_placement == "pre"
        self.parallel = config.parallel_residual
        # None without dropout: decoding steps then skip two module calls per layer (as MLP skips its own)
        self.drop = Dropout(config.dropout) if config.dropout else None

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(h) if self.drop is not None else h

    def _residual(self, x: torch.Tensor, norm: nn.Module, sublayer, post: nn.Module | None = None) -> torch.Tensor:
        if self.pre_norm:
            h = sublayer(norm(x))
            return x + self._drop(post(h) if post is not None else h)
        return norm(x + self._drop(sublayer(x)))

    def forward(self, x, mask, *, is_causal=False, context=None, context_mask=None, cache=None, layer=0, position=0,
                rotary=None):
        def attend(h):
            return self.attn(h, mask, is_causal=is_causal, cache=cache, layer=layer, position=position, rotary=rotary)

        if self.parallel:  # GPT-NeoX: both sub-layers read the block input (sum in transformers' order)
            attended = self._drop(attend(self.attn_norm(x)))
            return self._drop(self.mlp(self.mlp_norm(x))) + attended + x
        x = self._residual(x, self.attn_norm, attend, self.attn_post_norm)
        if self.cross_attn is not None:
            x = self._residual(x, self.cross_norm,
                               lambda h: self.cross_attn(h, context_mask, context=context, cache=cache, layer=layer))
        return self._residual(x, self.mlp_norm, self.mlp, self.mlp_post_norm)


class Stack(nn.Module):
    """Embedding extras + blocks + final norm; an encoder, a decoder, or a decoder with cross-attention."""

    def __init__(self, config: ModelConfig, num_layers: int, causal: bool, cross: bool = False):
        super().__init__()
        H, E = config.hidden_size, config.embedding_width
        self.config, self.causal = config, causal
        self.positions = (Embedding(config.max_positions + config.position_offset, H)
                          if config.positions == "learned" else None)
        self.rotary = Rotary(config) if config.positions == "rotary" else None
        self.token_types = Embedding(config.type_vocab_size, H) if config.type_vocab_size else None
        self.project_in = Linear(E, H, bias=False) if E != H else None  # OPT's narrower embeddings
        self.embed_norm = norm_of(config, H) if config.embedding_norm else None
        self.rel_bias = (RelativePositionBias(config.relative_buckets, config.relative_max_distance,
                                              config.num_heads, bidirectional=not causal)
                         if config.positions == "relative" else None)
        self.layers = nn.ModuleList(Block(config, cross, layer=i) for i in range(num_layers))
        self.kinds = sorted({block.kind for block in self.layers})
        self.final_norm = norm_of(config, H) if config.final_norm else None
        self.project_out = Linear(H, E, bias=False) if E != H else None
        embedding_dropout = config.dropout if config.embedding_dropout is None else config.embedding_dropout
        self.embed_drop = Dropout(embedding_dropout)
        self.drop = Dropout(config.dropout if config.final_norm_dropout else 0.0)  # after the final norm (T5)
        self.gradient_checkpointing = False  # recompute each block's activations in backward (training only)

    def position_ids(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                     T: int, past: int, device: torch.device) -> torch.Tensor:
        config = self.config
        if config.positions_from_padding:  # RoBERTa: count non-pad tokens, start after pad id
            if input_ids is None:
                raise ValueError("positions counted from padding need input_ids")
            keep = input_ids.ne(config.pad_token_id).long()
            return (keep.cumsum(1) + past) * keep + config.pad_token_id
        if config.positions_from_mask and attention_mask is not None:  # OPT: kept tokens counted, pads at -1
            keep = attention_mask.long()
            return (keep.cumsum(1) * keep - 1)[:, past:past + T] + config.position_offset
        return torch.arange(past, past + T, device=device)[None, :] + config.position_offset

    def embed(self, embeds: torch.Tensor, input_ids=None, attention_mask=None, token_type_ids=None,
              position_ids=None, past: int = 0) -> torch.Tensor:
        """Token embeddings (B, T, E) -> block input (B, T, H): scale, project in, add positions and types,
        norm, dropout."""
        B, T, _ = embeds.shape
        config = self.config
        x = embeds
        if config.embedding_scale != 1.0:  # Gemma multiplies by the scale rounded to the embeddings' dtype
            scale = config.embedding_scale
            if config.embedding_scale_rounded:  # a float32 tensor cast to the dtype, as Gemma's embed_scale buffer
                scale = torch.tensor(scale, dtype=torch.float32).to(x.dtype).item()
            x = x * scale
        if self.project_in is not None:
            x = self.project_in(x)
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
             context_padded: bool | None = None, rotary_ids: torch.Tensor | None = None,
             first: int | None = None) -> MaskPlan:
        """The masks (and rotary tables) of one call over `length` positions (see masks.py), for every step.

        attention_mask: (B, length) 1 = keep, or None; padded / context_padded: whether a mask has a 0,
        when the caller knows (otherwise it is read from the device, once); position_ids: (B|1, length)
        for a learned position table or rotary positions, sliced per step (without them each step counts
        its own); rotary_ids: the positions the rotary tables are made for instead (default: position_ids,
        else 0 .. length - 1); first: how many positions the first step feeds (the prompt; for the rotary
        types whose frequencies depend on it). Head counts come from the stack's modules.
        """
        if attention_mask is not None and padded is None:
            padded = not bool(attention_mask.all())
        if context_mask is not None and context_padded is None:
            context_padded = not bool(context_mask.all())
        key_bias = relative = rotary = None
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
        if self.rotary is not None:
            if rotary_ids is None:
                rotary_ids = position_ids if position_ids is not None else torch.arange(length, device=device)[None]
            rotary = self.rotary.tables(rotary_ids, dtype, first)  # {kind: (B|1, 1, length, rot) cos, sin}
        cross = padding_bias(context_mask, dtype) if context_padded else None  # (B, 1, 1, S)
        return MaskPlan(length, self.causal, dtype, device, key_bias=key_bias, relative=relative, cross=cross,
                        position_ids=position_ids, window=self.config.sliding_window, rotary=rotary)

    def masks(self, plan: MaskPlan, cache: KVCache | None, position: int | torch.Tensor, T: int,
              static: bool) -> dict[str, tuple[torch.Tensor | None, bool]]:
        """{layer kind: (mask, is_causal)} of this step. Sliding layers whose keys live in the cache's ring
        read it whole for one token (masked by what each slot holds) or its window part plus the new keys."""
        masks = {"full": plan.self_attention(position, T, static)} if "full" in self.kinds else {}
        if "sliding" not in self.kinds:
            return masks
        if cache is None or cache.window is None:
            masks["sliding"] = plan.self_attention(position, T, static, kind="sliding")
            return masks
        if T > 1:  # several tokens: the ring's part of the window, then the new keys (a host start)
            start = cache.length
            masks["sliding"] = plan.self_attention(start, T, kind="sliding", first_key=cache.window_start(start))
        cache.note_ring_keys(position, T, plan.keys(position, T))
        if T == 1:
            masks["sliding"] = (cache.ring_bias, False)
        return masks

    def forward(self, embeds: torch.Tensor, *, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, context=None, context_mask=None, cache: KVCache | None = None,
                plan: MaskPlan | None = None, cache_position: torch.Tensor | None = None) -> torch.Tensor:
        """embeds: (B, T, E) token embeddings; returns (B, T, E).

        Without a `plan`, the masks are prepared here from attention_mask (B, past + T) (1 = keep) and
        context_mask (B, S), and rotary tables from position_ids (B|1, T) (default: past .. past + T - 1); a
        caller that feeds several steps (generation) prepares one plan for all of them and passes it
        instead. With a cache, the new keys go to `cache_position` (T,) or, by default, after the
        `cache.length` stored ones.
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
            ids = None  # rotary tables for the T new positions only
            if self.rotary is not None:
                ids = position_ids if position_ids is not None else torch.arange(past, past + T, device=x.device)[None]
            plan = self.plan(B, length, x.dtype, x.device, attention_mask=attention_mask,
                             context_mask=context_mask if context is not None else None, rotary_ids=ids)
            rotary = plan.rotary
        else:
            rotary = plan.rotary_at(position, T)
        masks = self.masks(plan, cache, position, T, static)
        frame = record.open_frame(self)  # None unless the call records hidden states or attentions
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.layers):
            if frame is not None:
                frame.hidden_states.append(x)
            mask, is_causal = masks[block.kind]
            step = dict(is_causal=is_causal, context=context, context_mask=plan.cross, cache=cache, layer=i,
                        position=position, rotary=rotary[block.rope] if rotary is not None else None)
            x = checkpoint(block, x, mask, use_reentrant=False, **step) if recompute else block(x, mask, **step)
        if cache is not None:
            cache.advance(T)
        if self.final_norm is not None:
            x = self.drop(self.final_norm(x))
        if self.project_out is not None:
            x = self.project_out(x)
        if frame is not None:
            frame.hidden_states.append(x)
        return x
