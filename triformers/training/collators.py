"""transformers' data collators, with its names, arguments and defaults, on triformers' own pieces: padding is
`tokenization.batch.pad_ids`, masking is `objectives.MLMCollator`, causal-LM labels are `objectives.CLMCollator`.

- `DataCollatorWithPadding(tokenizer)`: pads input_ids / attention_mask / token_type_ids / special_tokens_mask on
  the tokenizer's padding side (what `tokenizer.pad` does there), tensors the rest, `label` -> `labels`.
- `DataCollatorForTokenClassification(tokenizer)`: the same, labels padded with -100.
- `DataCollatorForSeq2Seq(tokenizer, model=None)`: labels padded with -100 to the longest label; with a model
  that has `prepare_decoder_input_ids_from_labels`, also `decoder_input_ids`.
- `DataCollatorForLanguageModeling(tokenizer, mlm=True)`: dynamic masking (80/10/10 of `mlm_probability`), or
  with `mlm=False` labels = input_ids, -100 on padding.
- `default_data_collator` / `DefaultDataCollator`: stacks what is there, `label` / `label_ids` -> `labels`.

Two deliberate differences, both in the language-modelling collator: with `mlm=False` padding is told by the
attention mask, not by `labels == pad_token_id`, so a GPT-2 tokenizer padding with its EOS keeps the loss on
real EOS tokens (transformers drops it); and random replacements draw only non-special ids (transformers may
insert [CLS] or [PAD]). Only `return_tensors="pt"` is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..objectives import CLMCollator, MLMCollator
from ..tokenization.batch import pad_ids

LONGEST, MAX_LENGTH, NO_PADDING = (True, "longest"), ("max_length",), (False, "do_not_pad")


def _check_tensors(return_tensors: str | None) -> None:
    if return_tensors not in (None, "pt"):
        raise InputError(f"return_tensors={return_tensors!r}: the collators return torch tensors only ('pt')")


def as_tensor(values: Sequence[Any], key: str) -> torch.Tensor:
    """One batch column as a tensor: stacked tensors / arrays, or a tensor of the numbers (long for integers)."""
    first = values[0]
    if isinstance(first, str):
        raise InputError(f"the batch column {key!r} holds text: tokenize it, drop it, or keep remove_unused_columns")
    if isinstance(first, torch.Tensor):
        return torch.stack(list(values))
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(values))
    try:
        return torch.tensor(values)
    except (ValueError, TypeError):
        raise InputError(f"the batch column {key!r} has rows of different lengths and is not one that is padded "
                         "(input_ids, attention_mask, token_type_ids, special_tokens_mask, labels)") from None


def pad_features(tokenizer: Any, features: Sequence[Mapping[str, Any]], padding: bool | str = True,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 skip: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """What `tokenizer.pad(features, return_tensors="pt")` returns: the token columns padded (and an attention mask
    made when the features have none), every other column (but `skip`) as a tensor."""
    pad_values = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "special_tokens_mask": 1,
                  "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    if padding in MAX_LENGTH:
        length = max_length if max_length is not None else tokenizer.model_max_length
    elif padding in LONGEST or padding in NO_PADDING:
        length = None
    else:
        raise InputError(f"padding={padding!r}: use True / 'longest', 'max_length' or False / 'do_not_pad'")
    keys = [k for k in features[0] if k not in skip]
    batch: dict[str, torch.Tensor] = {}
    for key in keys:
        values = [feature[key] for feature in features]
        if key not in pad_values:
            batch[key] = as_tensor(values, key)
            continue
        if padding in NO_PADDING and len({len(v) for v in values}) > 1:
            raise InputError(f"padding=False but the {key} rows have different lengths")
        if pad_values[key] is None:
            raise InputError("padding needs a pad token: set tokenizer.pad_token (e.g. tokenizer.pad_token = "
                             "tokenizer.eos_token)")
        batch[key], mask = pad_ids([list(v) for v in values], pad_values[key], side=tokenizer.padding_side,
                                   length=length, multiple_of=pad_to_multiple_of)
        if key == "input_ids" and "attention_mask" not in keys:
            batch["attention_mask"] = mask
    return batch


def _rename_labels(batch: dict[str, Any]) -> dict[str, Any]:
    for old in ("label", "label_ids"):
        if old in batch:
            batch["labels"] = batch.pop(old)
    return batch


def _pad_labels(labels: Sequence[Sequence[int]], value: int, side: str, length: int | None,
                multiple_of: int | None) -> torch.Tensor:
    return pad_ids([list(row) for row in labels], value, side=side, length=length, multiple_of=multiple_of)[0]


@dataclass
class DataCollatorWithPadding:
    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_tensors(self.return_tensors)
        return _rename_labels(pad_features(self.tokenizer, features, self.padding, self.max_length,
                                           self.pad_to_multiple_of))


@dataclass
class DataCollatorForTokenClassification:
    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_tensors(self.return_tensors)
        name = "label" if "label" in features[0] else "labels"
        batch = pad_features(self.tokenizer, features, self.padding, self.max_length, self.pad_to_multiple_of,
                             skip=(name,))
        if name in features[0]:
            batch[name] = _pad_labels([f[name] for f in features], self.label_pad_token_id,
                                      self.tokenizer.padding_side, batch["input_ids"].shape[1], None)
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    tokenizer: Any
    model: Any = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: list[Mapping[str, Any]], return_tensors: str | None = None) -> dict[str, Any]:
        _check_tensors(return_tensors or self.return_tensors)
        name = "label" if "label" in features[0] else "labels"
        labels = [f[name] for f in features] if name in features[0] else None
        if labels is not None and all(label is None for label in labels):
            labels = None
        batch = pad_features(self.tokenizer, features, self.padding, self.max_length, self.pad_to_multiple_of,
                             skip=(name,))
        if labels is None:
            return batch
        longest = self.max_length if self.padding in MAX_LENGTH and self.max_length is not None else None
        batch["labels"] = _pad_labels(labels, self.label_pad_token_id, self.tokenizer.padding_side, longest,
                                      self.pad_to_multiple_of)
        if hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
            batch["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        return batch


@dataclass
class DataCollatorForLanguageModeling:
    tokenizer: Any
    mlm: bool = True
    whole_word_mask: bool = False
    mlm_probability: float | None = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_tensors(self.return_tensors)
        if not self.mlm:
            if self.whole_word_mask:
                raise InputError("whole_word_mask needs mlm=True")
            self._objective = CLMCollator.from_tokenizer(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)
            return
        if self.tokenizer.mask_token is None:
            raise InputError("this tokenizer has no mask token, which masked language modelling needs: pass "
                             "mlm=False to train a causal language model")
        if self.mlm_probability is None:
            raise InputError("mlm_probability must be in [0, 1], got None")
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        self._objective = MLMCollator.from_tokenizer(
            self.tokenizer, mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob, whole_word_mask=self.whole_word_mask,
            continuation_ids=self._continuation_ids(), pad_to_multiple_of=self.pad_to_multiple_of,
            generator=generator)

    def _continuation_ids(self) -> list[int] | None:
        """Whole-word masking on a WordPiece vocabulary: the `##` pieces continue a word."""
        if not self.whole_word_mask:
            return None
        continuation = [i for token, i in self.tokenizer.get_vocab().items() if token.startswith("##")]
        return continuation or None

    @property
    def generator(self) -> torch.Generator | None:
        if not self.mlm:
            raise AttributeError("a causal-LM collator draws nothing at random")
        return self._objective.generator

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        self._objective.generator = value

    def __call__(self, examples: list[Any]) -> dict[str, torch.Tensor]:
        batch = self._objective(examples)
        if isinstance(examples[0], Mapping):  # other token columns (token_type_ids) padded alongside
            done = {"input_ids", "attention_mask", "labels", "special_tokens_mask", "word_ids", "offset_mapping"}
            rest = [{k: v for k, v in example.items() if k not in done} for example in examples]
            if rest[0]:
                batch.update(pad_features(self.tokenizer, rest, "max_length", batch["input_ids"].shape[1]))
        return batch


def default_data_collator(features: list[Any], return_tensors: str = "pt") -> dict[str, torch.Tensor]:
    """Stack every non-text column of dict examples; `label` / `label_ids` become `labels`."""
    _check_tensors(return_tensors)
    if not isinstance(features[0], Mapping):
        features = [vars(f) for f in features]
    first, batch = features[0], {}
    for key, value in first.items():
        if value is None or isinstance(value, str):
            continue
        batch[key] = as_tensor([f[key] for f in features], key)  # int64 for integer labels, float32 for floats
    return _rename_labels(batch)


@dataclass
class DefaultDataCollator:
    return_tensors: str = "pt"

    def __call__(self, features: list[Any], return_tensors: str | None = None) -> dict[str, torch.Tensor]:
        return default_data_collator(features, return_tensors or self.return_tensors)


def default_collator_for(processing_class: Any):
    """transformers' choice: padding with the tokenizer when the Trainer has one, else default_data_collator."""
    if processing_class is not None and hasattr(processing_class, "pad_token_id") and \
            hasattr(processing_class, "padding_side"):
        return DataCollatorWithPadding(processing_class)
    return default_data_collator
