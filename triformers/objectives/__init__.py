"""Pre-training objectives as collators: token-id sequences in, model inputs and labels out.

- `MLMCollator` (BERT / RoBERTa): 15% of tokens, 80/10/10 mask/random/keep, optional whole words.
- `pack_documents`, `CLMCollator` (GPT-2 / BLOOM): packed blocks, labels = inputs, -100 on padding.
- `SpanCorruptionCollator`, `random_spans_noise_mask`, `compute_input_and_target_lengths` (T5).
- `TextInfillingCollator` (BART): Poisson(3) spans over 30% of tokens, one mask token per span.

Every collator takes explicit ids and has `from_tokenizer(tokenizer, **kwargs)`; see each module for
the paper and reference code it follows.
"""

from triformers.objectives.clm import (
    IGNORE_INDEX,
    CLMCollator,
    chunk_tokens,
    pack_documents,
    pad_sequences,
)
from triformers.objectives.denoising import TextInfillingCollator
from triformers.objectives.mlm import MLMCollator
from triformers.objectives.span_corruption import (
    SpanCorruptionCollator,
    chunk_for_span_corruption,
    compute_input_and_target_lengths,
    random_spans_noise_mask,
    sentinel_ids_from_tokenizer,
)

__all__ = [
    "IGNORE_INDEX",
    "CLMCollator",
    "MLMCollator",
    "SpanCorruptionCollator",
    "TextInfillingCollator",
    "chunk_for_span_corruption",
    "chunk_tokens",
    "compute_input_and_target_lengths",
    "pack_documents",
    "pad_sequences",
    "random_spans_noise_mask",
    "sentinel_ids_from_tokenizer",
]
