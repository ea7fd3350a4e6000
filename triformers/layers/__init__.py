"""Shared building blocks: norms, position schemes (learned, relative buckets, ALiBi, rotary), masks (prepared
once per call), attention with a KV cache (grouped-query heads, sliding-window rings), MLP, block, stack."""

from .attention import Attention, eager_attention
from .block import MLP, Block, Stack
from .kv_cache import KVCache
from .masks import MaskPlan
from .norms import RMSNorm, make_norm
from .positions import RelativePositionBias, alibi_bias, alibi_slopes
from .rotary import Rotary, apply_rotary, inverse_frequencies

__all__ = ["Attention", "KVCache", "MaskPlan", "MLP", "Block", "Stack", "RMSNorm", "make_norm",
           "RelativePositionBias", "alibi_bias", "alibi_slopes", "Rotary", "apply_rotary", "inverse_frequencies",
           "eager_attention"]
