"""Shared building blocks: norms, position schemes, masks (prepared once per call), attention with KV cache,
MLP, block, stack."""

from .attention import Attention, KVCache
from .block import MLP, Block, Stack
from .masks import MaskPlan
from .norms import RMSNorm, make_norm
from .positions import RelativePositionBias, alibi_bias, alibi_slopes

__all__ = ["Attention", "KVCache", "MaskPlan", "MLP", "Block", "Stack", "RMSNorm", "make_norm",
           "RelativePositionBias", "alibi_bias", "alibi_slopes"]
