"""Masked language modelling (BERT / RoBERTa): select 15% of tokens, then 80/10/10 mask/random/keep.

Follows Devlin et al. 2019 (BERT, section 3.1) with the per-token Bernoulli selection of transformers'
`DataCollatorForLanguageModeling.torch_mask_tokens` (the RoBERTa-style dynamic masking):
- each non-special, non-padding token is selected with probability `mlm_probability`;
- a selected token becomes the mask token with probability `mask_replace_prob`, a random token with
  probability `random_replace_prob`, and stays unchanged otherwise (one uniform draw per token);
- random tokens are drawn uniformly from the *non-special* ids of the vocabulary (transformers draws
  from the whole vocabulary, so it can insert `[CLS]` or `[PAD]` mid-sentence);
- labels hold the original id at selected positions and -100 everywhere else.

Whole-word masking (Google BERT's `--do_whole_word_mask`, transformers' `whole_word_mask=True`): each
*word* is selected with probability `mlm_probability` and all its tokens with it, so the expected share
of selected tokens is still `mlm_probability`. The 80/10/10 choice stays per token, as in Google's
`create_pretraining_data.py` (transformers instead forces 100% mask tokens under whole-word masking).
Words come from per-example `word_ids` (what `tokenizers`' `Encoding.word_ids` gives; `None` or -1 for
special tokens), or from continuation tokens (WordPiece `##...`) given as a set of ids or a callback.
A new word starts wherever the word id changes, after a special/padding token, or at a
non-continuation token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from triformers.errors import InputError
from triformers.objectives.clm import IGNORE_INDEX, as_id_sequences, pad_sequences


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class MLMCollator:
    """Pad a batch of id sequences and mask it for MLM; returns `input_ids`, `attention_mask`, `labels`.

    Examples are id lists/tensors, or mappings with `input_ids` and optionally `special_tokens_mask`
    (1 = never select) and `word_ids` (for whole-word masking).
    """

    def __init__(
        self,
        mask_token_id: int,
        pad_token_id: int,
        vocab_size: int,
        special_ids: Iterable[int] = (),
        *,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word_mask: bool = False,
        continuation_ids: Iterable[int] | None = None,
        is_continuation: Callable[[int], bool] | None = None,
        pad_to_multiple_of: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.mlm_probability = _check_probability("mlm_probability", mlm_probability)
        self.mask_replace_prob = _check_probability("mask_replace_prob", mask_replace_prob)
        self.random_replace_prob = _check_probability("random_replace_prob", random_replace_prob)
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            raise InputError(
                f"mask_replace_prob + random_replace_prob must not exceed 1, got "
                f"{mask_replace_prob} + {random_replace_prob}"
            )
        if mask_token_id is None or pad_token_id is None:
            raise InputError("MLMCollator needs both a mask_token_id and a pad_token_id")
        if not 0 <= mask_token_id < vocab_size:
            raise InputError(f"mask_token_id {mask_token_id} is outside the vocabulary of {vocab_size}")
        if continuation_ids is not None and is_continuation is not None:
            raise InputError("give either continuation_ids or is_continuation, not both")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = int(pad_token_id)
        self.vocab_size = int(vocab_size)
        self.special_ids = torch.tensor(sorted({int(i) for i in special_ids} | {self.mask_token_id, self.pad_token_id}))
        ordinary = torch.ones(self.vocab_size, dtype=torch.bool)
        ordinary[self.special_ids[self.special_ids < self.vocab_size]] = False
        self.random_candidates = ordinary.nonzero().squeeze(1)  # ids a random replacement may take
        if self.random_replace_prob > 0 and len(self.random_candidates) == 0:
            raise InputError("random_replace_prob > 0 but the vocabulary has no non-special ids")
        self.whole_word_mask = whole_word_mask
        if continuation_ids is not None:
            ids = torch.tensor(sorted({int(i) for i in continuation_ids}), dtype=torch.long)
            self._is_continuation = lambda t: torch.isin(t, ids)
        elif is_continuation is not None:
            self._is_continuation = lambda t: torch.tensor(
                [bool(is_continuation(int(i))) for i in t.reshape(-1)]
            ).reshape(t.shape)
        else:
            self._is_continuation = None
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = generator

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> MLMCollator:
        """Read `mask_token_id`, `pad_token_id`, `all_special_ids` and `len(tokenizer)`."""
        mask = getattr(tokenizer, "mask_token_id", None)
        if mask is None:
            raise InputError("the tokenizer has no mask token, which masked language modelling needs")
        return cls(
            mask_token_id=mask,
            pad_token_id=tokenizer.pad_token_id,
            vocab_size=len(tokenizer),
            special_ids=getattr(tokenizer, "all_special_ids", ()),
            **kwargs,
        )

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        sequences = as_id_sequences(examples)
        input_ids, attention_mask = pad_sequences(sequences, self.pad_token_id, self.pad_to_multiple_of)
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)  # (B, T)
        if isinstance(examples[0], Mapping) and "special_tokens_mask" in examples[0]:
            given, _ = pad_sequences(as_id_sequences(examples, "special_tokens_mask"), 1, length=input_ids.shape[1])
            maskable &= given == 0
        word_starts = self._word_starts(examples, input_ids, maskable) if self.whole_word_mask else None
        masked_input_ids, labels = self.mask_tokens(input_ids, maskable, word_starts)
        return {"input_ids": masked_input_ids, "attention_mask": attention_mask, "labels": labels}

    def _word_starts(self, examples: Sequence[Any], input_ids: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the maskable tokens that begin a word."""
        previous_maskable = torch.nn.functional.pad(maskable[:, :-1], (1, 0), value=False)
        starts = maskable & ~previous_maskable
        if isinstance(examples[0], Mapping) and "word_ids" in examples[0]:
            rows = [[-1 if w is None else int(w) for w in example["word_ids"]] for example in examples]
            word_ids, _ = pad_sequences(as_id_sequences(rows), -1, length=input_ids.shape[1])
            changed = word_ids != torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-2)
            return maskable & (starts | changed)
        if self._is_continuation is None:
            raise InputError(
                "whole_word_mask needs `word_ids` in each example, or continuation_ids / "
                "is_continuation on the collator"
            )
        return maskable & (starts | ~self._is_continuation(input_ids))

    def mask_tokens(
        self, input_ids: torch.Tensor, maskable: torch.Tensor, word_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Select and corrupt tokens of a padded (B, T) batch; returns `(input_ids, labels)` (new tensors).

        `maskable` (B, T) bool marks the tokens that may be selected; with `word_starts` (B, T) bool the
        draw is per word, a word being a start token and the maskable tokens after it up to the next start.
        """
        draw = torch.rand(input_ids.shape, generator=self.generator) < self.mlm_probability
        if word_starts is None:
            selected = draw & maskable
        else:
            # every token inherits the draw of the start of its word: word index = running count of starts
            word_index = torch.cumsum(word_starts.long().reshape(-1), 0) - 1  # (B*T,)
            start_draws = draw.reshape(-1)[word_starts.reshape(-1)]  # one draw per word
            selected = start_draws[word_index.clamp(min=0)].reshape(input_ids.shape) & maskable
        labels = input_ids.masked_fill(~selected, IGNORE_INDEX)

        choice = torch.rand(input_ids.shape, generator=self.generator)
        to_mask = selected & (choice < self.mask_replace_prob)
        to_random = selected & ~to_mask & (choice < self.mask_replace_prob + self.random_replace_prob)
        corrupted = input_ids.masked_fill(to_mask, self.mask_token_id)
        if to_random.any():
            picks = torch.randint(len(self.random_candidates), (int(to_random.sum()),), generator=self.generator)
            corrupted[to_random] = self.random_candidates[picks]
        return corrupted, labels
