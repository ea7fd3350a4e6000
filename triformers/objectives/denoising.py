"""BART text infilling: Poisson(3)-long spans covering ~30% of tokens, each replaced by one mask token.

Follows Lewis et al. 2020 (BART, section 2.2 "Text Infilling") and fairseq's
`fairseq/data/denoising_dataset.py` (`add_whole_word_mask` with `mask_length="span-poisson"`,
`replace_length=1`, and `add_insertion_noise` for zero-length spans). Per sequence, exactly:

1. The maskable tokens are the non-special ones (BOS, EOS, padding and any other special id stay).
   `num_to_mask = ceil(n_maskable * mask_ratio)`, as fairseq.
2. Span lengths are drawn from Poisson(`poisson_lambda`) until they sum to at least `num_to_mask`;
   the last one is trimmed so that they sum to exactly `num_to_mask` (fairseq's "trim to budget").
   Zero-length draws stay in the list: they are fairseq's insertions (a mask token inserted where
   no token is removed).
3. The spans (zero-length included) are placed in random order at random non-overlapping places,
   at least one kept token apart, uniformly over such placements. fairseq instead picks span
   starts independently and lets spans overlap and merge (so it masks somewhat less than
   `mask_ratio`, and its insertions land anywhere); keeping spans apart makes "one span, one mask
   token" exact and the masked share exactly `num_to_mask / n_maskable`. If the spans cannot be
   kept apart (tiny sequences, very high `mask_ratio`), insertions and then the last spans are dropped.
4. Each span becomes one mask token. fairseq's optional `mask_random` (replace some mask tokens
   by random ones) and sentence permutation / token deletion / rotation are not implemented.

Labels are the original sequences (the model builds `decoder_input_ids` by shifting them right),
padded with -100; inputs are right-padded with `pad_token_id`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from triformers.errors import InputError
from triformers.objectives.clm import IGNORE_INDEX, as_id_sequences, pad_sequences


class TextInfillingCollator:
    """Batch of id sequences (with BOS/EOS already added) -> `input_ids`, `attention_mask`, `labels`."""

    def __init__(
        self,
        mask_token_id: int,
        pad_token_id: int,
        special_ids: Iterable[int] = (),
        *,
        mask_ratio: float = 0.3,
        poisson_lambda: float = 3.0,
        pad_to_multiple_of: int | None = None,
        generator: torch.Generator | None = None,
    ):
        if mask_token_id is None or pad_token_id is None:
            raise InputError("TextInfillingCollator needs a mask_token_id and a pad_token_id")
        if not 0.0 <= mask_ratio <= 1.0:
            raise InputError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        if poisson_lambda <= 0:
            raise InputError(f"poisson_lambda must be positive, got {poisson_lambda}")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = int(pad_token_id)
        self.special_ids = torch.tensor(sorted({int(i) for i in special_ids} | {self.mask_token_id, self.pad_token_id}))
        self.mask_ratio = float(mask_ratio)
        self.poisson_lambda = float(poisson_lambda)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = generator

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> TextInfillingCollator:
        """Read `mask_token_id`, `pad_token_id` and `all_special_ids`."""
        mask = getattr(tokenizer, "mask_token_id", None)
        if mask is None:
            raise InputError("the tokenizer has no mask token, which text infilling needs")
        return cls(
            mask_token_id=mask,
            pad_token_id=tokenizer.pad_token_id,
            special_ids=getattr(tokenizer, "all_special_ids", ()),
            **kwargs,
        )

    def span_lengths(self, num_to_mask: int) -> torch.Tensor:
        """Poisson span lengths (zeros kept) summing to exactly `num_to_mask`; (num_spans,) long."""
        if num_to_mask == 0:
            return torch.zeros(0, dtype=torch.long)
        rates = torch.full((num_to_mask,), self.poisson_lambda)
        lengths = torch.poisson(rates, generator=self.generator).long()
        while int(lengths.sum()) < num_to_mask:
            lengths = torch.cat([lengths, torch.poisson(rates, generator=self.generator).long()])
        cumulative = torch.cumsum(lengths, 0)
        last = int(torch.searchsorted(cumulative, num_to_mask))  # first span reaching the budget
        lengths = lengths[: last + 1].clone()
        lengths[last] = num_to_mask - (int(cumulative[last - 1]) if last > 0 else 0)
        return lengths

    def place_spans(self, n_maskable: int, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(starts, lengths)` in maskable-token coordinates for spans kept >= 1 token apart.

        Stars and bars: lay out the free tokens and the spans as items, choose which item slots are
        spans, then a span's start is its slot index plus the lengths of the spans before it (the
        reserved separator after each earlier span takes the place of that span's own slot).
        """
        while len(lengths) and n_maskable - int(lengths.sum()) < len(lengths) - 1:
            # too crowded to keep spans apart: drop an insertion if there is one, else the last span
            empty = (lengths == 0).nonzero()
            drop = int(empty[-1]) if len(empty) else len(lengths) - 1
            lengths = torch.cat([lengths[:drop], lengths[drop + 1 :]])
        num_spans = len(lengths)
        free = n_maskable - int(lengths.sum()) - max(num_spans - 1, 0)
        slots = torch.randperm(free + num_spans, generator=self.generator)[:num_spans].sort().values
        before = torch.cumsum(lengths, 0) - lengths
        return slots + before, lengths

    def infill(self, tokens: torch.Tensor) -> torch.Tensor:
        """One 1-D sequence -> its corrupted copy (shorter or equal; one mask token per span)."""
        maskable_positions = (~torch.isin(tokens, self.special_ids)).nonzero().squeeze(1)  # (n,)
        n_maskable = len(maskable_positions)
        lengths = self.span_lengths(math.ceil(n_maskable * self.mask_ratio))
        starts, lengths = self.place_spans(n_maskable, lengths)
        removed = torch.zeros(len(tokens), dtype=torch.bool)
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            removed[maskable_positions[start : start + length]] = True
        # a span's mask token goes right before the maskable token where the span starts (a
        # zero-length span placed after the last maskable token goes right after it)
        anchors = torch.cat([maskable_positions, maskable_positions[-1:] + 1])[starts]  # (num_spans,)
        # order the output by key: mask before position i -> 2i, kept token i -> 2i + 1
        kept = (~removed).nonzero().squeeze(1)
        keys = torch.cat([2 * anchors, 2 * kept + 1])
        values = torch.cat([torch.full_like(anchors, self.mask_token_id), tokens[kept]])
        return values[torch.sort(keys, stable=True).indices]

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        originals = as_id_sequences(examples)
        corrupted = [self.infill(tokens) for tokens in originals]
        input_ids, attention_mask = pad_sequences(corrupted, self.pad_token_id, self.pad_to_multiple_of)
        labels, label_mask = pad_sequences(originals, self.pad_token_id, self.pad_to_multiple_of)
        labels = labels.masked_fill(label_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
