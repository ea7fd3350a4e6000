"""The KV cache of a continuously batched decoder: one row (slot) per running sequence, each at its own length.

`KVCache` (layers/attention.py) serves one `generate` call, where every row is at the same position. Here rows
join and leave at any step, so a decoding step feeds one token per row at that row's own position: `SlotCache`
writes each row's new key and value at its own index and reads the prefix up to the longest row, and
`SlotPlan` hands the model the matching per-row mask (keys past a row's own length hidden) and position ids.
Both go through the model's ordinary forward (`plan=`, `cache=`, `cache_position=`), the way `generate`
drives it, so the model code knows nothing of slots.

Running rows are kept packed in rows [0, active): a row that leaves is replaced by the last one (`move`), so
that a step reads a view of the cache, never a gathered copy. New prompts are computed straight into their
rows (`prompt_view`, several right-padded into one batch), with the masks and positions of `generate`'s own
prompt pass, which is what makes a greedy reply equal to the offline one. The buffers' length grows by
doubling, up to the context length, so that a server sized for 64 rows of 2048 positions does not hold that memory idle.
"""

from __future__ import annotations

import torch

from ..layers.attention import KVCache
from ..layers.masks import MaskPlan


class SlotCache(KVCache):
    """`rows` slots of keys and values; a step writes row r's new position at `positions[r]`.

    k, v: (layers, rows, heads, capacity, head_dim); `active` rows take part in a step; `read` is how many
    positions a step's attention reads (the longest active row, its new token included).
    """

    def __init__(self, attentions: list, rows: int, context: int, dtype: torch.dtype, device: torch.device | str,
                 capacity: int = 128):
        probe = KVCache.for_layers(attentions, rows, 0, dtype, device)  # the layers' own (heads, head_dim)
        super().__init__(probe.k.shape[0], rows, probe.k.shape[2], probe.k.shape[4], min(capacity, context),
                         dtype, device)
        self.context, self.active, self.read = context, 0, 0

    def reserve(self, length: int) -> None:
        """Make room for `length` positions per row (doubling the buffers, at most to the context)."""
        if length <= self.max_length:
            return
        capacity = min(self.context, max(length, 2 * self.max_length))
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:3], capacity, old.shape[4])
            new[:, :, :, :self.max_length] = old
            setattr(self, name, new)
        self.max_length = capacity

    def prompt_view(self, first: int, rows: int, length: int) -> KVCache:
        """A `KVCache` of `rows` rows whose buffers are rows [first, first + rows) of this one: the prompt pass
        writes in place."""
        self.reserve(length)
        view = KVCache(self.k.shape[0], rows, self.k.shape[2], 0, self.k.shape[4], self.k.dtype, self.k.device)
        view.k, view.v = self.k[:, first:first + rows, :, :length], self.v[:, first:first + rows, :, :length]
        view.max_length = length
        return view

    def copy_row(self, source: int, target: int, length: int) -> None:
        """Row `target` gets the first `length` positions of row `source` (n choices of one prompt)."""
        self.k[:, target, :, :length] = self.k[:, source, :, :length]
        self.v[:, target, :, :length] = self.v[:, source, :, :length]

    move = copy_row  # packing: the last running row fills the place of one that left

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               position: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (active, heads, 1, head_dim), written at row r's own position `position[r]`."""
        rows = torch.arange(k.shape[0], device=k.device)
        self.k[layer][rows, :, position] = k[:, :, 0]
        self.v[layer][rows, :, position] = v[:, :, 0]
        return self.k[layer, :self.active, :, :self.read], self.v[layer, :self.active, :, :self.read]

    def advance(self, steps: int) -> None:  # each row's length is the engine's, not one shared count
        pass


class SlotPlan:
    """The masks and positions of one decoding step over the packed rows (what `MaskPlan` is to `generate`).

    base: the model's `MaskPlan` over the context for one unpadded row (its key part: ALiBi slopes times the key
    position, or nothing); positions: (active,) where each row's new token goes, which is also its position id.
    """

    cross = None

    def __init__(self, base: MaskPlan, positions: torch.Tensor, read: int, uniform: bool,
                 rotary: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None, offset: int = 0):
        if base.relative is not None:
            raise ValueError("slot decoding supports decoders without relative position buckets")
        self.base, self.positions_now, self.read, self.uniform = base, positions, read, uniform
        self.rotary = rotary  # each row's rotary tables at its own position, or None
        self.offset = offset  # where a learned position table starts (OPT: 2)

    def rotary_at(self, start: torch.Tensor, length: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        return self.rotary

    def positions(self, start: torch.Tensor, length: int) -> torch.Tensor:
        return self.positions_now[:, None] + self.offset  # (active, 1)

    def self_attention(self, start: torch.Tensor, length: int, static: bool = False, kind: str = "full",
                       first_key: int = 0) -> tuple[torch.Tensor | None, bool]:
        key = self.base.key_bias[..., :self.read] if self.base.key_bias is not None else None  # (1, nh, 1, read)
        window = self.base.window if kind == "sliding" else None
        windowed = window is not None and self.read > window
        if self.uniform and not windowed:  # every row at the same length: nothing to hide, as in generate's step
            return key, False
        keys = torch.arange(self.read, device=self.positions_now.device)
        now = self.positions_now[:, None]
        outside = keys[None, :] > now  # (active, read): a row's unwritten or other rows' positions
        if windowed:  # a sliding layer sees its last `window` positions only
            outside = outside | (keys[None, :] <= now - window)
        hidden = torch.where(outside, self.base.min, 0.0).to(self.base.dtype)
        hidden = hidden[:, None, None, :]  # (active, 1, 1, read)
        return (hidden if key is None else (key + hidden).clamp_(min=self.base.min)), False
