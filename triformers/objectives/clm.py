"""Causal language modelling data: pack documents into fixed blocks, and pad batches.

Matches the recipe of GPT-2 style pre-training as in transformers' `examples/pytorch/language-modeling/
run_clm.py` (`group_texts`: concatenate, cut into `block_size` chunks, drop the remainder) and the
`mlm=False` branch of `DataCollatorForLanguageModeling`: labels are the inputs themselves, because the
model shifts them inside its loss, and padding carries -100 so that no loss is taken across it.

One deliberate difference: padding is known from the sequence lengths (or an explicit attention mask),
never from `labels == pad_token_id`, so that a GPT-2 style `pad_token_id == eos_token_id` does not
silently drop the loss on real EOS tokens.

The padding helpers here (`as_id_sequences`, `pad_sequences`) are shared by every collator in
`triformers.objectives`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..errors import InputError, TokenizerError
from ..tokenization.batch import pad_ids

IGNORE_INDEX = -100  # label value the losses skip (torch's cross_entropy default `ignore_index`)


def as_id_sequences(examples: Sequence[Any], key: str = "input_ids") -> list[torch.Tensor]:
    """1-D LongTensors from a batch of id lists, tensors, or mappings holding `key`."""
    if len(examples) == 0:
        raise InputError("a collator got an empty batch")
    sequences = []
    for index, example in enumerate(examples):
        ids = example[key] if isinstance(example, Mapping) else example
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() != 1:
            raise InputError(f"example {index}: expected a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
        sequences.append(ids)
    return sequences


def pad_sequences(
    sequences: Sequence[torch.Tensor], pad_value: int, pad_to_multiple_of: int | None = None, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D tensors to one length; returns `(padded (B, T), attention_mask (B, T))` (see `pad_ids`)."""
    try:
        return pad_ids(sequences, pad_value, length=length, multiple_of=pad_to_multiple_of,
                       dtype=sequences[0].dtype)
    except TokenizerError as err:
        raise InputError(str(err)) from None


def chunk_tokens(
    stream: Sequence[int] | torch.Tensor,
    chunk_length: int,
    drop_remainder: bool = True,
    pad_token_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into rows of `chunk_length`; returns `(chunks (N, L), attention_mask (N, L))`.

    The remainder is dropped, or (`drop_remainder=False`) kept as a last row padded with `pad_token_id`.
    """
    if chunk_length < 1:
        raise InputError(f"chunk/block length must be a positive integer, got {chunk_length}")
    stream = torch.as_tensor(stream, dtype=torch.long).reshape(-1)
    n_full = len(stream) // chunk_length
    remainder = len(stream) - n_full * chunk_length
    chunks = stream[: n_full * chunk_length].reshape(n_full, chunk_length)
    attention_mask = torch.ones_like(chunks)
    if remainder and not drop_remainder:
        if pad_token_id is None:
            raise InputError("drop_remainder=False needs a pad_token_id to pad the last block")
        last, last_mask = pad_sequences([stream[n_full * chunk_length :]], pad_token_id, length=chunk_length)
        chunks = torch.cat([chunks, last])
        attention_mask = torch.cat([attention_mask, last_mask])
    return chunks, attention_mask


def pack_documents(
    docs: Iterable[Sequence[int] | torch.Tensor],
    block_size: int,
    eos_token_id: int,
    *,
    drop_remainder: bool = True,
    pad_token_id: int | None = None,
    return_attention_mask: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Join documents, each followed by EOS, and cut the stream into `(n_blocks, block_size)` ids.

    `doc0 EOS doc1 EOS doc2 EOS` is cut into consecutive blocks; a document may span two blocks (as in
    GPT-2 / run_clm.py). The tail shorter than a block is dropped, or with `drop_remainder=False` padded
    with `pad_token_id`; pass `return_attention_mask=True` to get `(blocks, attention_mask)` so that
    the padding can be told from real tokens even when `pad_token_id == eos_token_id`.
    """
    pieces = []
    eos = torch.tensor([eos_token_id], dtype=torch.long)
    for doc in docs:
        pieces += [torch.as_tensor(doc, dtype=torch.long).reshape(-1), eos]
    stream = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    blocks, attention_mask = chunk_tokens(stream, block_size, drop_remainder, pad_token_id)
    return (blocks, attention_mask) if return_attention_mask else blocks


class CLMCollator:
    """Batch of token-id sequences -> `input_ids`, `attention_mask`, `labels` (inputs, -100 on padding).

    Examples are id lists/tensors (padded here, on the right) or mappings with `input_ids` and
    optionally `attention_mask` (e.g. rows of `pack_documents(..., return_attention_mask=True)`).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise InputError("CLMCollator needs a pad_token_id (GPT-2 style tokenizers: use the EOS id)")
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> CLMCollator:
        """Read `pad_token_id` (falling back to `eos_token_id`, as GPT-2 has no pad token)."""
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        if pad is None:
            raise InputError("the tokenizer has neither a pad_token_id nor an eos_token_id to pad with")
        return cls(pad_token_id=pad, **kwargs)

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        sequences = as_id_sequences(examples)
        input_ids, attention_mask = pad_sequences(sequences, self.pad_token_id, self.pad_to_multiple_of)
        if isinstance(examples[0], Mapping) and "attention_mask" in examples[0]:
            given, _ = pad_sequences(as_id_sequences(examples, "attention_mask"), 0, self.pad_to_multiple_of)
            attention_mask = attention_mask * given
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
