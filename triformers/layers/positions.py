"""Position schemes that act on attention as an additive bias.

- Relative buckets (T5, Raffel et al. 2020, `T5Attention._relative_position_bucket`): one learned
  scalar per (bucket, head); half the buckets exact, half logarithmic up to `max_distance`;
  bidirectional in encoders, causal in decoders.
- ALiBi (Press et al. 2022, "Train Short, Test Long"; BLOOM's `build_alibi_tensor`): a fixed slope
  per head times the key position, counted from the first non-pad token.
Learned absolute positions are an embedding table and live in the embeddings (see block.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .embedding import Embedding
from .masks import offsets


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    # float math on positions >= max_exact only; clamp avoids log(0) on the small ones
    large = max_exact + (
        torch.log(relative_position.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, large)


class RelativePositionBias(nn.Module):
    """T5 relative attention bias, owned by the first layer of a stack and shared by all its layers."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.embed = Embedding(num_buckets, num_heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, length: int) -> torch.Tensor:
        """(heads, 2 * length - 1): the bias at every offset k - q of `length` positions (entry
        length - 1 + d for offset d), from which any (query, key) block is a Toeplitz slice (masks.py)."""
        buckets = relative_position_bucket(offsets(length, self.embed.weight.device), self.bidirectional,
                                           self.num_buckets, self.max_distance)
        return self.embed(buckets).t().contiguous()


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes; head counts that are not powers of two interleave a second series."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra_base = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        extra = min(closest, num_heads - closest)
        slopes += [extra_base ** (2 * i + 1) for i in range(extra)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(attention_mask: torch.Tensor, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, heads, 1, Tk) bias: slope * position, positions counted over non-pad keys from 0."""
    positions = ((attention_mask.cumsum(-1) - 1) * attention_mask)[:, None, None, :].float()  # (B,1,1,Tk)
    slopes = alibi_slopes(num_heads).to(attention_mask.device)[None, :, None, None]
    return (slopes * positions).to(dtype)
