"""The preallocated KV cache of one call (a `generate`, or a user's incremental forwards).

Full-attention layers keep every position: `k[layer]` is (B, kv_heads, max_length, head_dim), written in
place at a position index (an int: a slice assignment; a `cache_position` tensor (T,): `index_copy_`, no
host integer needed) and read as the written prefix `[:length]` (the CPU path: a view, no concatenation),
or with `static=True` as all `max_length` slots, unwritten ones hidden by the causal mask (`MaskPlan`), so
that every step has the same shapes (gpt-fast's `input_pos`; a GPU step can be captured once as a graph).

Sliding-window layers (Mistral, Gemma 2/3) need only the last `window` positions, so when a call is longer
than the window their keys live in a ring of `window` slots (position p in slot p % window), as
transformers' sliding-window cache bounds them. A step of one token writes its slot and reads the whole
ring (every slot within the window by construction), masked by `ring_bias`: what each slot holds, as the
additive key bias of its position (padding), or dtype's min while unwritten. A chunk of several tokens (the
prompt) attends to the ring's part of the window in position order plus its own keys, with the plan's
windowed mask, and then keeps its last `window` keys. Only the number of heads is stored (grouped-query
attention: the kv heads, never repeated).
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of past positions, preallocated for the whole generation (see the module docstring).

    windows: per layer, its sliding window or None; layers whose window is shorter than `max_length` get a
    ring. `length` counts the positions written so far; `cross` holds cross-attention keys and values
    (computed once from the encoder output).
    """

    def __init__(self, num_layers: int, batch: int, heads: int, head_dim: int, max_length: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu", *, static: bool = False,
                 windows: list[int | None] | None = None):
        windows = list(windows) if windows is not None else [None] * num_layers
        ring = {w for w in windows if w is not None and w < max_length}
        if len(ring) > 1:
            raise ValueError(f"one KV cache holds one sliding window size, got {sorted(ring)}")
        self.window = ring.pop() if ring else None
        self.slots = []  # per layer: (in the ring, index in its store)
        for w in windows:
            in_ring = self.window is not None and w == self.window
            self.slots.append((in_ring, sum(1 for s in self.slots if s[0] == in_ring)))
        n_ring = sum(1 for in_ring, _ in self.slots if in_ring)
        full = (num_layers - n_ring, batch, heads, max_length, head_dim)
        self.k = torch.zeros(full, dtype=dtype, device=device)
        self.v = torch.zeros(full, dtype=dtype, device=device)
        self.ring_k = self.ring_v = self.ring_bias = None
        if n_ring:
            ring_shape = (n_ring, batch, heads, self.window, head_dim)
            self.ring_k = torch.zeros(ring_shape, dtype=dtype, device=device)
            self.ring_v = torch.zeros(ring_shape, dtype=dtype, device=device)
            self.ring_bias = torch.full((batch, 1, 1, self.window), torch.finfo(dtype).min, dtype=dtype, device=device)
        self.length = 0  # positions already stored
        self.max_length, self.static = max_length, static
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    @classmethod
    def for_layers(cls, attentions: list, batch: int, max_length: int, dtype: torch.dtype,
                   device: torch.device | str = "cpu", *, static: bool = False) -> KVCache:
        """A cache sized by the self-attention modules of one stack (their cached heads, head size and
        window), not by the config, whose head count need not be the stack's."""
        shapes = {attention.cache_shape for attention in attentions}
        if len(shapes) != 1:
            raise ValueError(f"one KV cache holds layers of one shape (heads, head_dim), got {sorted(shapes)}")
        (heads, head_dim), = shapes
        windows = [getattr(attention, "window", None) for attention in attentions]
        return cls(len(attentions), batch, heads, head_dim, max_length, dtype, device, static=static,
                   windows=windows)

    def in_ring(self, layer: int) -> bool:
        return self.slots[layer][0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               position: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, heads, T, head_dim) at `position` (the first new one, by default `length`, or
        (T,) positions) and return what attention reads: the prefix up to the new positions, every slot if
        static, or for a ring layer the ring (one token) or its window part followed by the new keys (several)."""
        position = self.length if position is None else position
        in_ring, index = self.slots[layer]
        if in_ring:
            return self._ring_update(index, k, v, position)
        T = k.shape[2]
        keys, values = self.k[index], self.v[index]  # (B, heads, max_length, head_dim) views of this layer
        if isinstance(position, torch.Tensor):
            keys.index_copy_(2, position, k)
            values.index_copy_(2, position, v)
            end = self.length + T
        else:
            end = position + T
            if end > self.max_length:
                raise RuntimeError(f"KV cache full: {end} positions needed, {self.max_length} allocated")
            keys[:, :, position:end] = k
            values[:, :, position:end] = v
        if self.static:
            return keys, values
        return keys[:, :, :end], values[:, :, :end]

    def _ring_update(self, index: int, k: torch.Tensor, v: torch.Tensor,
                     position: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W, T = self.window, k.shape[2]
        ring_k, ring_v = self.ring_k[index], self.ring_v[index]
        if T == 1:
            if isinstance(position, torch.Tensor):
                slot = position % W
                ring_k.index_copy_(2, slot, k)
                ring_v.index_copy_(2, slot, v)
            else:
                ring_k[:, :, position % W] = k[:, :, 0]
                ring_v[:, :, position % W] = v[:, :, 0]
            return ring_k, ring_v
        start = self.length  # several tokens: a host position (the prompt, or a user's chunk)
        first = self.window_start(start)
        if first < start:  # the window's past keys, in position order
            past = torch.arange(first, start, device=k.device) % W
            k_read = torch.cat((ring_k.index_select(2, past), k), dim=2)
            v_read = torch.cat((ring_v.index_select(2, past), v), dim=2)
        else:
            k_read, v_read = k, v
        kept = min(T, W)
        slots = torch.arange(start + T - kept, start + T, device=k.device) % W
        ring_k.index_copy_(2, slots, k[:, :, T - kept:])
        ring_v.index_copy_(2, slots, v[:, :, T - kept:])
        return k_read, v_read

    def window_start(self, start: int) -> int:
        """The first key position a chunk of queries from `start` reads from the ring (its window's oldest)."""
        return max(0, start - self.window + 1)

    def note_ring_keys(self, position: int | torch.Tensor, length: int, key_bias: torch.Tensor | None) -> None:
        """Record in `ring_bias` what the ring's slots hold once `length` positions from `position` (an int,
        or their (T,) positions) are written: each one's key bias (B|1, 1, 1, length), or 0 (no padding).
        Called once per step for all ring layers, which write the same slots."""
        W, bias = self.window, self.ring_bias
        kept = min(length, W)
        if not isinstance(position, torch.Tensor) and kept == 1:  # a decoding step: one slot
            bias[..., position % W] = key_bias[..., -1] if key_bias is not None else 0.0
            return
        if isinstance(position, torch.Tensor):
            slots = position[length - kept:] % W
        else:
            slots = torch.arange(position + length - kept, position + length, device=bias.device) % W
        values = key_bias[..., length - kept:] if key_bias is not None else bias.new_zeros(1, 1, 1, kept)
        bias.index_copy_(3, slots, values.expand(bias.shape[0], 1, 1, kept).contiguous())

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the cache of the beams it keeps); a static cache keeps its
        buffers (their addresses) when the batch size stays."""
        for name, dim in (("k", 1), ("v", 1), ("ring_k", 1), ("ring_v", 1), ("ring_bias", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            chosen = value.index_select(dim, index)
            if self.static and chosen.shape == value.shape:
                value.copy_(chosen)
            else:
                setattr(self, name, chosen)
        self.cross = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                      for kv in self.cross]
