"""`Tokenizer.pad`: transformers' padding of already-encoded inputs (a collate function's job).

Takes one encoding (a dict of id lists), a batch as a dict of lists of id lists, or a list of dicts (what a
DataLoader hands a collate function); lists, tensors or arrays. The main input (`input_ids`), `token_type_ids`,
`special_tokens_mask` and `attention_mask` are padded on the tokenizer's padding side (an attention mask is made
when there is none); every other key (`labels`, ...) passes through as it is, as in transformers
(reference: `tokenization_utils_base.py` `pad` / `_pad`). The padding itself is `batch.pad_ids`. A row longer
than `max_length` is left as it is, as transformers leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import TokenizerError
from .backend import LARGE_INTEGER, PADDING
from .batch import BatchEncoding, pad_ids
from .encoding import convert


def _as_lists(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def _target_length(tokenizer: Any, padding: Any, max_length: int | None, rows: Sequence[Sequence[int]],
                   multiple_of: int | None) -> int | None:
    """The length rows are padded to, or None for no padding (transformers' strategies)."""
    if padding not in PADDING:
        raise TokenizerError(f"pad: padding must be one of {list(PADDING)}, got {padding!r}")
    strategy = PADDING[padding]
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise TokenizerError(f"pad: max_length must be a positive int or None, got {max_length!r}")
    if multiple_of is not None and (isinstance(multiple_of, bool) or not isinstance(multiple_of, int)
                                    or multiple_of < 1):
        raise TokenizerError(f"pad: pad_to_multiple_of must be a positive int or None, got {multiple_of!r}")
    if strategy == "max_length" and max_length is None:
        if tokenizer.model_max_length > LARGE_INTEGER:
            strategy = None  # no limit to pad to: transformers does not pad
        max_length = tokenizer.model_max_length
    if strategy is None:
        return None
    if tokenizer.pad_token_id is None:
        raise TokenizerError("padding needs a pad token: set tokenizer.pad_token (e.g. tokenizer.pad_token = "
                             "tokenizer.eos_token)")
    length = max(len(row) for row in rows) if strategy == "longest" else max_length
    if multiple_of and length % multiple_of:
        length = (length // multiple_of + 1) * multiple_of
    return length


def _pad_rows(rows: list[list[int]], value: int, side: str, length: int) -> list[list[int]]:
    """Each row padded with `value` to `length`; a longer row unchanged."""
    if all(len(row) <= length for row in rows):
        return pad_ids(rows, value, side=side, length=length)[0].tolist()
    return [row if len(row) >= length else pad_ids([row], value, side=side, length=length)[0][0].tolist()
            for row in rows]


def pad(tokenizer: Any, encoded_inputs: Any, padding: bool | str = True, max_length: int | None = None,
        pad_to_multiple_of: int | None = None, padding_side: str | None = None,
        return_attention_mask: bool | None = None, return_tensors: str | None = None,
        verbose: bool = True) -> BatchEncoding:
    """Pad encoded inputs (see the module docstring) and return them as a BatchEncoding."""
    if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
        keys = list(encoded_inputs[0].keys())
        missing = [i for i, row in enumerate(encoded_inputs) if not isinstance(row, Mapping) or set(row) != set(keys)]
        if missing:
            raise TokenizerError(f"pad: the features do not all have the same keys as the first ({keys}); "
                                 f"first different: index {missing[0]}")
        encoded_inputs = {key: [row[key] for row in encoded_inputs] for key in keys}
    if not isinstance(encoded_inputs, Mapping):
        raise TokenizerError(f"pad takes an encoding (a dict of id lists), a dict of lists of id lists or a list of "
                             f"such dicts, got {type(encoded_inputs).__name__}")
    main = tokenizer.model_input_names[0]
    if main not in encoded_inputs:
        raise TokenizerError(f"pad: the inputs have no {main!r} (they have {list(encoded_inputs)})")
    first = encoded_inputs[main]
    if return_tensors is None and (isinstance(first, (torch.Tensor, np.ndarray)) or (
            isinstance(first, (list, tuple)) and first and isinstance(first[0], (torch.Tensor, np.ndarray)))):
        sample = first if isinstance(first, (torch.Tensor, np.ndarray)) else first[0]
        return_tensors = "pt" if isinstance(sample, torch.Tensor) else "np"  # as given, like transformers
    data = {key: _as_lists(value) for key, value in encoded_inputs.items()}
    if not data[main]:
        return BatchEncoding({**data, **({"attention_mask": []} if return_attention_mask else {})})
    batched = isinstance(data[main][0], list)
    if not batched:
        data = {key: [value] for key, value in data.items()}
    sizes = {key: len(value) for key, value in data.items()}
    if len(set(sizes.values())) > 1:
        raise TokenizerError(f"pad: the keys hold batches of different sizes: {sizes}")
    want_mask = "attention_mask" in tokenizer.model_input_names if return_attention_mask is None \
        else return_attention_mask
    rows = data[main]
    if want_mask and "attention_mask" not in data:
        data["attention_mask"] = [[1] * len(row) for row in rows]
    length = _target_length(tokenizer, padding, max_length, rows, pad_to_multiple_of)
    if length is not None:
        side = padding_side or tokenizer.padding_side
        values = {main: tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id,
                  "special_tokens_mask": 1, **({"attention_mask": 0} if want_mask else {})}
        for key, value in values.items():
            if key in data:
                data[key] = _pad_rows(data[key], value, side, length)
    out = convert(data, False, return_tensors)
    return BatchEncoding(out if batched else {key: value[0] for key, value in out.items()})
