"""A tokenizer call, as transformers' `__call__` does it: texts and pairs, targets, overflowing windows.

- `text` / `text_pair` are encoded by the backend in one batch, with the padding and truncation settings
  of the call set on it (under the Tokenizer's lock, see `backend.py`);
- `text_target` / `text_pair_target` are encoded the same way (with `max_target_length` when given); with
  `text` too, their `input_ids` become the `labels` of the result, alone they are the result;
- `return_overflowing_tokens=True` turns each truncated encoding and its overflowing windows (`stride`
  ids of overlap) into rows of their own, and `overflow_to_sample_mapping` names each row's input.
A single text comes back unbatched (lists of ids), except with overflowing windows or tensors, as in
transformers (reference: `tokenization_utils_base.py` `__call__`, `tokenization_utils_tokenizers.py`
`_encode_plus` / `_convert_encoding`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..errors import TokenizerError
from .backend import as_tokenizer_error, configure
from .batch import BatchEncoding

# the keyword arguments of a call (besides the texts), with transformers' defaults
CALL_DEFAULTS: dict[str, Any] = {
    "add_special_tokens": True, "padding": False, "truncation": None, "max_length": None, "stride": 0,
    "is_split_into_words": False, "pad_to_multiple_of": None, "padding_side": None, "return_tensors": None,
    "return_token_type_ids": None, "return_attention_mask": None, "return_overflowing_tokens": False,
    "return_special_tokens_mask": False, "return_offsets_mapping": False, "return_length": False,
    "verbose": True, "split_special_tokens": None, "max_target_length": None,
}
TENSOR_TYPES = (None, "pt", "np")


def call_options(given: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The call's options: `given` (the named arguments), then `tokenizer_kwargs`; an unknown name is an error."""
    options = {**given, **(extra or {})}
    unknown = sorted(set(options) - set(CALL_DEFAULTS))
    if unknown:
        raise TokenizerError(f"tokenizer call: unknown keyword argument(s) {', '.join(unknown)}; the call takes "
                             f"text, text_pair, text_target, text_pair_target, {', '.join(CALL_DEFAULTS)}")
    return {**CALL_DEFAULTS, **options}


def encode_call(tokenizer: Any, text: Any, text_pair: Any, text_target: Any, text_pair_target: Any,
                options: dict[str, Any]) -> BatchEncoding:
    """`tokenizer(text, text_pair, text_target=..., text_pair_target=..., **options)`."""
    if text is None and text_target is None:
        raise TokenizerError("tokenizer call: give `text` or `text_target` (or both)")
    if text is None and text_pair is not None:
        raise TokenizerError("tokenizer call: text_pair was given without text")
    if text_target is None and text_pair_target is not None:
        raise TokenizerError("tokenizer call: text_pair_target was given without text_target")
    options = dict(options)
    max_target_length = options.pop("max_target_length")
    encoded = target = None
    if text is not None:
        encoded = encode_texts(tokenizer, text, text_pair, **options)
    if text_target is not None:
        if max_target_length is not None:
            options["max_length"] = max_target_length
        target = encode_texts(tokenizer, text_target, text_pair_target, **options)
    if target is None:
        return encoded
    if encoded is None:
        return target
    encoded["labels"] = target["input_ids"]
    return encoded


def _check_texts(text: Any, text_pair: Any, pretokenized: bool) -> tuple[bool, list]:
    """(batched?, the backend's inputs: texts or (text, pair) tuples), with transformers' checks."""
    batched = isinstance(text, (list, tuple)) and not (pretokenized and text and isinstance(text[0], str))
    texts = list(text) if batched else [text]
    if not batched and not text_pair:
        text_pair = None  # transformers treats an empty single pair as no pair
    if batched and isinstance(text_pair, str):
        raise TokenizerError("for a batch of texts, text_pair must be a list of the same length, not a string")
    if text_pair is not None and not isinstance(text_pair, (str, list, tuple)):
        raise TokenizerError(f"text_pair must be a string or a list of strings, got {type(text_pair).__name__}")
    pairs = []
    if text_pair is not None:
        pairs = list(text_pair) if batched else [text_pair]
        if len(pairs) != len(texts):
            raise TokenizerError(f"got {len(texts)} texts but {len(pairs)} text pairs")
    for item in texts + pairs:
        if not isinstance(item, (str, list, tuple)) or (not pretokenized and not isinstance(item, str)):
            raise TokenizerError(f"text input must be a string or a list of strings, got {type(item).__name__}")
    return batched, list(zip(texts, pairs, strict=True)) if pairs else texts


def encode_texts(tokenizer: Any, text: Any, text_pair: Any, *, padding, truncation, max_length, stride,
                 pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids, return_attention_mask,
                 return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping, return_length,
                 add_special_tokens, is_split_into_words, split_special_tokens, verbose) -> BatchEncoding:
    """One batch (or one text, or one pair) through the backend, as a BatchEncoding."""
    batched, inputs = _check_texts(text, text_pair, is_split_into_words)
    if return_tensors not in TENSOR_TYPES:
        raise TokenizerError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
    settings = (padding, truncation, max_length, stride, pad_to_multiple_of, padding_side)
    split = tokenizer.split_special_tokens if split_special_tokens is None else bool(split_special_tokens)
    truncating, encodings = backend_encode(tokenizer, inputs, settings, add_special_tokens, is_split_into_words, split)
    longest = max((len(e.ids) for e in encodings), default=0)
    limit = tokenizer.model_max_length
    if verbose and not truncating and max_length is None and 0 < limit < longest:
        # transformers only warns here: the model's position table is the hard limit
        warnings.warn(f"Token indices sequence length is longer than the specified maximum sequence length for this "
                      f"model ({longest} > {limit}). Running this sequence through the model will result in "
                      f"indexing errors", stacklevel=4)
    names = tokenizer.model_input_names
    want_types = "token_type_ids" in names if return_token_type_ids is None else return_token_type_ids
    want_mask = "attention_mask" in names if return_attention_mask is None else return_attention_mask
    rows, samples = [], []
    for index, encoding in enumerate(encodings):
        windows = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
        rows += windows
        samples += [index] * len(windows)
    data: dict[str, list] = {"input_ids": [e.ids for e in rows]}
    if want_types:
        data["token_type_ids"] = [e.type_ids for e in rows]
    if want_mask:
        data["attention_mask"] = [e.attention_mask for e in rows]
    if return_special_tokens_mask:
        data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
    if return_offsets_mapping:
        data["offset_mapping"] = [[tuple(o) for o in e.offsets] for e in rows]
    if return_length:
        data["length"] = [len(e.ids) for e in rows]
    if return_overflowing_tokens:
        data["overflow_to_sample_mapping"] = samples
    unbatch = not batched and not return_overflowing_tokens
    return BatchEncoding(convert(data, unbatch, return_tensors), rows)


def backend_encode(tokenizer: Any, inputs: list, settings: tuple, add_special_tokens: bool, pretokenized: bool,
                   split_special_tokens: bool = False) -> tuple[bool, list]:
    """(truncating?, encodings) of one call: the settings are the backend's state, so one call at a time
    sets, uses and resets them, under the lock; the backend's bare Exceptions and panics are TokenizerErrors."""
    backend = tokenizer.backend
    with tokenizer._lock:
        try:
            truncating = configure(tokenizer, *settings)
            backend.encode_special_tokens = split_special_tokens  # special tokens in the text as plain text
            encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                             is_pretokenized=pretokenized)
        except BaseException as err:
            mapped = as_tokenizer_error(err, f"tokenization failed (text input, is_split_into_words={pretokenized})")
            if mapped is err:
                raise
            raise mapped from None
        finally:
            backend.no_padding()
            backend.no_truncation()
            backend.encode_special_tokens = False
    return truncating, encodings


def convert(data: dict[str, list], unbatch: bool, return_tensors: str | None) -> dict[str, Any]:
    """Rows per key as lists (one input: its row, as transformers drops the batch level of lists of lists only)
    or as tensors / arrays of the whole batch."""
    if return_tensors is None:
        if not unbatch:
            return data
        return {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
    if return_tensors not in TENSOR_TYPES:
        raise TokenizerError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
    out = {}
    for key, rows in data.items():
        if rows and isinstance(rows[0], (list, tuple)) and len({len(r) for r in rows}) > 1:
            raise TokenizerError(f"the {key} rows have different lengths: pass padding=True (and truncation=True) "
                                 "to return tensors")
        try:
            out[key] = torch.tensor(rows) if return_tensors == "pt" else np.array(rows)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TokenizerError(f"cannot make a {return_tensors!r} tensor of {key!r}: {err}") from None
    return out
