"""Attention masks and position biases of one call (a forward, or a whole `generate`), built once.

The additive bias of query q on key k splits into a part that depends on the key alone and a part
that depends on the offset k - q alone:

    key_bias[b, h, k]   padding (dtype's min on pad keys), ALiBi (slope * key position)
    relative[h, k - q]  causality (dtype's min for k > q), T5's bucketed relative bias

`MaskPlan` holds both for the call's whole length N (prompt + new tokens in generation). A step that
feeds queries [start, start + T) takes a slice of `key_bias` and T rows of the Toeplitz matrix of
`relative` (for one query, a slice of the vector), and adds them: no step rebuilds a constant or
synchronises with the device. Reads of a preallocated KV cache are either its written prefix (keys
[0, start + T), the CPU path) or, for static shapes, all N slots, whose unwritten ones the causal
part hides (gpt-fast's `input_pos` masks; a CUDA graph can then replay one step for every position).
Like transformers' `masking_utils.create_causal_mask`, the mask is made at the model boundary and
handed to every layer; unlike it, a decoding step slices instead of rebuilding.

Layers of another attention kind differ only in the relative part: sliding-window layers ("sliding",
Mistral, Gemma 2/3) also hide offsets k - q <= -window, in a relative vector of their own, with the key
part shared; each layer picks the mask of its kind. A sliding layer whose keys live in a ring of window
slots (kv_cache.py) reads its keys from `first_key` on, which the same Toeplitz rows serve. The rotary
cos / sin tables of the call's positions (rotary.py) are prepared here too and sliced the same way.
"""

from __future__ import annotations

import torch


def padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, Tk) 1/0 mask -> (B, 1, 1, Tk) additive bias (0 to keep, dtype's min to drop)."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def offsets(length: int, device: torch.device | str) -> torch.Tensor:
    """(2 * length - 1,) the offsets k - q of `length` positions: entry i is i - (length - 1)."""
    return torch.arange(1 - length, length, device=device)


class MaskPlan:
    """Every self- and cross-attention mask of one call over `length` positions, sliced per step.

    key_bias: (B|1, nh|1, 1, length) or None; relative: (nh, 2 * length - 1) position bias by offset
    k - q (T5), or None; causal: whether keys after the query are hidden; window: the sliding window of
    "sliding" layers, or None; cross: (B, 1, 1, S) bias over the encoder output, or None when nothing is
    padded; position_ids: (B|1, length) for learned position tables, or None; rotary: {kind: (cos, sin)}
    (B|1, 1, length, rot) tables, or None. The masks are additive floats in `dtype`; a masked entry is
    exactly dtype's min (never -inf), as a mask built from scratch with `torch.where` would hold it.
    """

    def __init__(self, length: int, causal: bool, dtype: torch.dtype, device: torch.device | str, *,
                 key_bias: torch.Tensor | None = None, relative: torch.Tensor | None = None,
                 cross: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                 window: int | None = None, rotary: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.length, self.causal, self.dtype, self.device = length, causal, dtype, device
        self.key_bias, self.relative, self.cross, self.position_ids = key_bias, relative, cross, position_ids
        self.window, self.rotary = window, rotary
        self.min = torch.finfo(dtype).min
        self._by_offset: dict[str, torch.Tensor] = {}  # relative + causality (+ window), built on first need

    def by_offset(self, kind: str = "full") -> torch.Tensor:
        """(nh|1, 2N - 1): the whole relative part of a layer kind; entry N - 1 + d is the bias at offset
        d = k - q."""
        if kind not in self._by_offset:
            N = self.length
            bias = self.relative if self.relative is not None else torch.zeros(1, 2 * N - 1, dtype=self.dtype,
                                                                               device=self.device)
            if self.causal:
                bias = torch.where(offsets(N, self.device) > 0, self.min, bias)
            if kind == "sliding" and self.window is not None:
                bias = torch.where(offsets(N, self.device) <= -self.window, self.min, bias)
            self._by_offset[kind] = bias
        return self._by_offset[kind]

    def self_attention(self, start: int | torch.Tensor, length: int, static: bool = False, kind: str = "full",
                       first_key: int = 0) -> tuple[torch.Tensor | None, bool]:
        """(mask, is_causal) for queries [start, start + length) of a layer kind: an additive
        (B|1, nh|1, T, Tk) mask or None, and whether SDPA should apply its own causal kernel instead.

        Tk = start + length - first_key (a prefix read from `first_key`) or N (static: the whole cache).
        `start` may be a `cache_position` tensor (T,) of the queries' positions; its rows are then
        gathered, which needs no host integer and implies a static read.
        """
        if isinstance(start, torch.Tensor):
            return self._gathered(start, kind), False
        end = start + length
        keys_end = self.length if static else end
        key = self.key_bias[..., first_key:keys_end] if self.key_bias is not None else None
        # a window hides keys only if the oldest key read is a window or more before the last query
        windowed = kind == "sliding" and self.window is not None and end - 1 - first_key >= self.window
        # a prefix read holds no key after a single query: causality needs no mask there
        if self.relative is None and not windowed and not (self.causal and (length > 1 or static)):
            return key, False
        if key is None and self.relative is None and not windowed and start == 0 and not static:
            return None, True  # unpadded prefill: SDPA's own causal kernel
        rows = self._rows(start, length, first_key, keys_end, kind)[None]  # (1, nh|1, T, Tk)
        return (rows, False) if key is None else (self._combine(key, rows), False)

    def _rows(self, start: int, length: int, first_key: int, keys_end: int, kind: str) -> torch.Tensor:
        """(nh|1, T, Tk): rows [start, start + T) and columns [first_key, keys_end) of the Toeplitz matrix
        bias[q, k] = by_offset[k - q]."""
        bias, keys = self.by_offset(kind), keys_end - first_key
        first = self.length - 1 - start + first_key  # index of the offset of (query start, key first_key)
        if length == 1:
            return bias[:, None, first:first + keys]
        # window i of the unfold holds offsets i - (N - 1) + [0, keys): the row of query N - 1 - i (keys from
        # 0); rows come out in descending query order, so one flip puts them in order
        windows = bias.unfold(-1, keys, 1)  # (nh|1, 2N - keys, keys)
        return windows[:, first - length + 1:first + 1].flip(-2)

    def _gathered(self, cache_position: torch.Tensor, kind: str = "full") -> torch.Tensor:
        """(B|1, nh|1, T, N): static-read rows of the queries at positions `cache_position` (T,)."""
        N = self.length
        rows = self.by_offset(kind).unfold(-1, N, 1).index_select(-2, (N - 1) - cache_position)[None]
        return rows if self.key_bias is None else self._combine(self.key_bias, rows)

    def _combine(self, key: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # min + min overflows to -inf: clamp back, so that a masked entry is exactly min, as in a mask
        # built with torch.where (a fully masked pad row then spreads evenly over its keys, no NaN)
        return (key + rows).clamp_(min=self.min)

    def keys(self, start: int | torch.Tensor, length: int) -> torch.Tensor | None:
        """(B|1, 1, 1, T) key bias of positions [start, start + length) (or at `cache_position`), or None."""
        if self.key_bias is None:
            return None
        if isinstance(start, torch.Tensor):
            return self.key_bias.index_select(-1, start)
        return self.key_bias[..., start:start + length]

    def positions(self, start: int | torch.Tensor, length: int) -> torch.Tensor | None:
        """(B|1, T) position ids of queries [start, start + length) (or at `cache_position`), or None."""
        if self.position_ids is None:
            return None
        if isinstance(start, torch.Tensor):
            return self.position_ids.index_select(-1, start)
        return self.position_ids[:, start:start + length]

    def rotary_at(self, start: int | torch.Tensor, length: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """{kind: (cos, sin)} (B|1, 1, T, rot) of positions [start, start + length) (or at `cache_position`)."""
        if self.rotary is None:
            return None
        if isinstance(start, torch.Tensor):
            return {kind: (cos.index_select(2, start), sin.index_select(2, start))
                    for kind, (cos, sin) in self.rotary.items()}
        return {kind: (cos[:, :, start:start + length], sin[:, :, start:start + length])
                for kind, (cos, sin) in self.rotary.items()}

    def select(self, index: torch.Tensor) -> None:
        """Keep (and repeat) batch rows, as beams and return sequences expand the batch."""
        for name in ("key_bias", "cross", "position_ids"):
            value = getattr(self, name)
            if value is not None and value.shape[0] > 1:
                setattr(self, name, value.index_select(0, index))
        if self.rotary is not None:
            self.rotary = {kind: tuple(t.index_select(0, index) if t.shape[0] > 1 else t for t in tables)
                           for kind, tables in self.rotary.items()}
