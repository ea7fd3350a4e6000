"""T5 span corruption: noise spans become sentinels in the inputs; targets list the spans.

Matches the T5 paper's code (Raffel et al. 2020; google-research/text-to-text-transfer-transformer,
`t5/data/preprocessors.py`: `random_spans_noise_mask`, `random_spans_helper`, `noise_span_to_unique_sentinel`,
`nonnoise_span_to_unique_sentinel`), as also ported in transformers' former Flax example
`examples/flax/language-modeling/run_t5_mlm_flax.py` (`compute_input_and_target_lengths`,
`FlaxDataCollatorForT5MLM`). With noise density 0.15 and mean span length 3:

    tokens  : a b c d e f g h          (a raw chunk of `tokens_length` ids)
    mask    : . . x x . . . x          (random_spans_noise_mask)
    inputs  : a b <extra_id_0> e f g <extra_id_1> EOS                    (exactly `input_length`)
    labels  : <extra_id_0> c d <extra_id_1> h EOS                        (exactly `target_length`)

Sentinel ids come from the tokenizer (`<extra_id_0>`, `<extra_id_1>`, ... in that order), never from
`config.vocab_size`. The shuffles use torch's generator instead of TensorFlow's stateless ops, so the
masks have the reference's distribution and span counts but not its exact random draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from triformers.errors import InputError
from triformers.objectives.clm import as_id_sequences, chunk_tokens

MAX_SENTINELS = 10_000  # from_tokenizer stops looking for `<extra_id_N>` here


def _random_segmentation(num_items: int, num_segments: int, generator: torch.Generator | None) -> torch.Tensor:
    """Split `num_items` into `num_segments` non-empty parts, uniformly over compositions; (num_segments,)."""
    # mark `num_segments - 1` of the `num_items - 1` gaps between items as segment boundaries
    boundary = torch.arange(num_items - 1) < (num_segments - 1)
    boundary = boundary[torch.randperm(num_items - 1, generator=generator)]
    first_in_segment = torch.cat([torch.zeros(1, dtype=torch.long), boundary.long()])
    segment_id = torch.cumsum(first_in_segment, 0)
    return torch.bincount(segment_id, minlength=num_segments)


def _noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) as `random_spans_noise_mask` computes them, for length >= 2."""
    num_noise_tokens = min(max(round(length * noise_density), 1), length - 1)
    num_noise_spans = max(round(num_noise_tokens / mean_noise_span_length), 1)
    return num_noise_tokens, num_noise_spans


def random_spans_noise_mask(
    length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(length,) bool: True at noise tokens, as T5's `random_spans_noise_mask` (random_roll=False).

    num_noise_tokens = round(length * noise_density) clamped to [1, length - 1]; num_noise_spans =
    max(1, round(num_noise_tokens / mean_noise_span_length)); noise and non-noise tokens are each
    split at random into that many non-empty spans, interleaved starting with non-noise (so the mask
    ends with a noise span). Like the reference, lengths below 2 are computed as 2 and cut back.
    """
    if not 0.0 <= noise_density < 1.0:
        raise InputError(f"noise_density must be in [0, 1), got {noise_density}")
    if mean_noise_span_length <= 0:
        raise InputError(f"mean_noise_span_length must be positive, got {mean_noise_span_length}")
    if length < 0:
        raise InputError(f"length must be non-negative, got {length}")
    if noise_density == 0.0:
        return torch.zeros(length, dtype=torch.bool)
    original_length, length = length, max(length, 2)
    num_noise_tokens, num_noise_spans = _noise_counts(length, noise_density, mean_noise_span_length)
    num_nonnoise_tokens = length - num_noise_tokens
    if num_noise_spans > num_nonnoise_tokens:
        # the reference fails here too (its segment counts no longer line up)
        raise InputError(
            f"{num_noise_spans} noise spans need at least as many non-noise tokens, have "
            f"{num_nonnoise_tokens} (length {length}, noise_density {noise_density})"
        )
    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, generator)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, generator)
    interleaved = torch.stack([nonnoise_span_lengths, noise_span_lengths], dim=1).reshape(-1)  # (2 * spans,)
    span_starts = torch.cumsum(interleaved, 0)[:-1]
    span_start_indicator = torch.zeros(length, dtype=torch.long)
    span_start_indicator[span_starts] = 1
    is_noise = torch.cumsum(span_start_indicator, 0) % 2 == 1
    return is_noise[:original_length]


def compute_input_and_target_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(tokens_length, targets_length): raw chunk length giving inputs of `inputs_length` (EOS included).

    T5's `random_spans_helper` with one sentinel per span in inputs and targets: the largest
    tokens_length whose inputs (non-noise + one sentinel per span + EOS) fit in `inputs_length`.
    """
    if inputs_length < 2:
        raise InputError(f"inputs_length must be at least 2 (a token and EOS), got {inputs_length}")

    def inputs_and_targets(tokens_length: int) -> tuple[int, int]:
        num_noise_tokens = round(tokens_length * noise_density)
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = round(num_noise_tokens / mean_noise_span_length)
        return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length - 1
    while inputs_and_targets(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = inputs_and_targets(tokens_length)
    # the reference's "minor hack" so that targets are no longer than inputs at density 0.5
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def _replace_spans(tokens: torch.Tensor, span_mask: torch.Tensor, sentinel_ids: torch.Tensor) -> torch.Tensor:
    """Keep tokens outside `span_mask`; each run of True becomes the next sentinel (1-D in, 1-D out)."""
    previous = torch.cat([torch.zeros(1, dtype=torch.bool), span_mask[:-1]])
    span_start = span_mask & ~previous
    sentinel_index = torch.cumsum(span_start.long(), 0) - 1
    if int(span_start.sum()) > len(sentinel_ids):
        raise InputError(f"{int(span_start.sum())} spans but only {len(sentinel_ids)} sentinel ids")
    replaced = torch.where(span_start, sentinel_ids[sentinel_index.clamp(min=0, max=len(sentinel_ids) - 1)], tokens)
    return replaced[~span_mask | span_start]


def sentinel_ids_from_tokenizer(tokenizer: Any) -> list[int]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... via `tokenizer.convert_tokens_to_ids`, in that order.

    Stops at the first name the tokenizer does not know (None, or its unknown-token id).
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids: list[int] = []
    for index in range(MAX_SENTINELS):
        token_id = tokenizer.convert_tokens_to_ids(f"<extra_id_{index}>")
        if token_id is None or token_id == unknown or (isinstance(token_id, int) and token_id < 0):
            break
        ids.append(int(token_id))
    if not ids:
        raise InputError(
            "the tokenizer has no sentinel tokens (<extra_id_0>, ...), which T5 span "
            "corruption needs; use a T5 tokenizer or pass sentinel_ids explicitly"
        )
    return ids


class SpanCorruptionCollator:
    """Raw chunks of `tokens_length` ids -> `input_ids` (B, input_length), `attention_mask`, `labels`.

    `tokens_length`/`target_length` come from `compute_input_and_target_lengths(input_length, ...)`;
    use `chunk_for_span_corruption` to cut a token stream into such chunks. Raises if a corrupted
    example would not have exactly the requested lengths.
    """

    def __init__(
        self,
        sentinel_ids: Sequence[int],
        eos_token_id: int,
        pad_token_id: int,
        input_length: int,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        generator: torch.Generator | None = None,
    ):
        if len(sentinel_ids) == 0:
            raise InputError("SpanCorruptionCollator needs at least one sentinel id")
        if eos_token_id is None or pad_token_id is None:
            raise InputError("SpanCorruptionCollator needs an eos_token_id and a pad_token_id")
        self.sentinel_ids = torch.as_tensor(list(sentinel_ids), dtype=torch.long)
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.input_length = int(input_length)
        self.noise_density = float(noise_density)
        self.mean_noise_span_length = float(mean_noise_span_length)
        self.tokens_length, self.target_length = compute_input_and_target_lengths(
            self.input_length, self.noise_density, self.mean_noise_span_length
        )
        num_noise, num_spans = _noise_counts(self.tokens_length, self.noise_density, self.mean_noise_span_length)
        if (self.tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1) != (
            self.input_length,
            self.target_length,
        ):
            # tiny lengths, where the helper counts 0 spans but the mask makes at least 1
            raise InputError(
                f"input_length {input_length} is too short for span corruption at noise "
                f"density {noise_density}: no raw chunk length gives exactly that length"
            )
        if num_spans > len(self.sentinel_ids):
            raise InputError(
                f"input_length {input_length} gives {num_spans} noise spans but only "
                f"{len(self.sentinel_ids)} sentinel ids were given"
            )
        self.generator = generator

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, input_length: int, **kwargs: Any) -> SpanCorruptionCollator:
        """Sentinels from `convert_tokens_to_ids("<extra_id_N>")`, plus `eos_token_id`, `pad_token_id`."""
        return cls(
            sentinel_ids=sentinel_ids_from_tokenizer(tokenizer),
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            input_length=input_length,
            **kwargs,
        )

    def corrupt(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One raw chunk (tokens_length,) -> (inputs (input_length,), targets (target_length,))."""
        noise = random_spans_noise_mask(len(tokens), self.noise_density, self.mean_noise_span_length, self.generator)
        eos = torch.tensor([self.eos_token_id])
        inputs = torch.cat([_replace_spans(tokens, noise, self.sentinel_ids), eos])
        # targets: the non-noise spans become the sentinels; the mask starts with non-noise, so
        # sentinel i lands right before noise span i
        targets = torch.cat([_replace_spans(tokens, ~noise, self.sentinel_ids), eos])
        if len(inputs) != self.input_length or len(targets) != self.target_length:
            raise InputError(
                f"span corruption gave inputs of {len(inputs)} and targets of {len(targets)} "
                f"tokens, expected {self.input_length} and {self.target_length}"
            )
        return inputs, targets

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        chunks = as_id_sequences(examples)
        for index, chunk in enumerate(chunks):
            if len(chunk) != self.tokens_length:
                raise InputError(
                    f"example {index} has {len(chunk)} tokens; span corruption to "
                    f"input_length {self.input_length} needs raw chunks of exactly "
                    f"{self.tokens_length} (see chunk_for_span_corruption)"
                )
        pairs = [self.corrupt(chunk) for chunk in chunks]
        input_ids = torch.stack([inputs for inputs, _ in pairs])  # (B, input_length)
        labels = torch.stack([targets for _, targets in pairs])  # (B, target_length)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def chunk_for_span_corruption(
    stream: Sequence[int] | torch.Tensor,
    input_length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> torch.Tensor:
    """Cut a token stream into (N, tokens_length) raw chunks for `input_length`; drops the remainder."""
    tokens_length, _ = compute_input_and_target_lengths(input_length, noise_density, mean_noise_span_length)
    chunks, _ = chunk_tokens(stream, tokens_length)
    return chunks
