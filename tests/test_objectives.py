"""Tests of the pre-training collators: statistics, exact reconstruction, lengths, tokenizer wiring.

Statistical tolerances are several standard deviations of the sampling error for the stated sample
sizes (given next to each check), with fixed seeds, so the tests are deterministic yet would catch a
wrong rate (e.g. 0.15 -> 0.12, or an 80/10/10 split applied to the wrong set).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from triformers.errors import InputError
from triformers.objectives import (
    CLMCollator,
    MLMCollator,
    SpanCorruptionCollator,
    TextInfillingCollator,
    chunk_for_span_corruption,
    compute_input_and_target_lengths,
    pack_documents,
    random_spans_noise_mask,
)

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
SPECIAL = [PAD, CLS, SEP, MASK, UNK]
VOCAB = 1000


class FakeTokenizer:
    """The duck-typed surface the collators read; T5-like sentinels at the top of the vocabulary."""

    def __init__(self, n_sentinels: int = 100):
        self.mask_token_id, self.pad_token_id, self.eos_token_id, self.unk_token_id = MASK, PAD, SEP, UNK
        self.sentinels = {f"<extra_id_{i}>": VOCAB - 1 - i for i in range(n_sentinels)}
        self.all_special_ids = SPECIAL + list(self.sentinels.values())

    def __len__(self) -> int:
        return VOCAB

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.sentinels.get(token, self.unk_token_id)


def random_batch(generator: torch.Generator, batch_size: int, low: int = 20, high: int = 200) -> list[list[int]]:
    """[CLS] ordinary tokens [SEP], variable lengths (so the collator must pad)."""
    batch = []
    for _ in range(batch_size):
        length = int(torch.randint(low, high, (1,), generator=generator))
        body = torch.randint(len(SPECIAL), VOCAB, (length,), generator=generator).tolist()
        batch.append([CLS, *body, SEP])
    return batch


# ----------------------------------------------------------------------------------------------- MLM


def test_mlm_statistics_and_special_tokens_never_selected():
    generator = torch.Generator().manual_seed(0)
    collator = MLMCollator.from_tokenizer(FakeTokenizer(n_sentinels=0), generator=generator)
    maskable = selected = to_mask = to_random = kept = 0
    while maskable < 200_000:
        batch = collator(random_batch(generator, 32))
        original = torch.where(batch["labels"] == -100, batch["input_ids"], batch["labels"])
        special = torch.isin(original, torch.tensor(SPECIAL)) | (batch["attention_mask"] == 0)
        picked = batch["labels"] != -100
        assert not (picked & special).any(), "a special or padding token was selected"
        assert torch.equal(batch["input_ids"][special], original[special]), "a special token was changed"
        assert (original[batch["attention_mask"] == 0] == PAD).all()
        inputs = batch["input_ids"][picked]
        random_ids = inputs[(inputs != MASK) & (inputs != batch["labels"][picked])]
        assert not torch.isin(random_ids, torch.tensor(SPECIAL)).any(), "random replacement drew a special id"
        maskable += int((~special).sum())
        selected += int(picked.sum())
        to_mask += int((inputs == MASK).sum())
        to_random += len(random_ids)
        kept += int((inputs == batch["labels"][picked]).sum())
    # n >= 200k maskable tokens: sd(share) = sqrt(.15 * .85 / n) <= 0.0008 -> tolerance 0.005 (> 6 sd).
    assert abs(selected / maskable - 0.15) < 0.005
    # >= 29k selected: sd(0.8 share) <= 0.0024, sd(0.1 share) <= 0.0018 -> tolerance 0.01 (> 4 sd).
    # (a random draw equal to the original, p = 1/995, counts as kept: well inside the tolerance)
    assert abs(to_mask / selected - 0.8) < 0.01
    assert abs(to_random / selected - 0.1) < 0.01
    assert abs(kept / selected - 0.1) < 0.01


def test_mlm_custom_split_seeded_and_padding():
    sequences = [list(range(10, 60)), list(range(10, 20))]

    def run(seed: int) -> dict[str, torch.Tensor]:
        collator = MLMCollator(
            MASK,
            PAD,
            VOCAB,
            SPECIAL,
            mlm_probability=1.0,
            mask_replace_prob=0.0,
            random_replace_prob=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
        return collator(sequences)

    batch = run(1)
    assert batch["input_ids"].shape == (2, 50)
    assert batch["attention_mask"][1].tolist() == [1] * 10 + [0] * 40
    assert (batch["input_ids"][1, 10:] == PAD).all() and (batch["labels"][1, 10:] == -100).all()
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"][real], torch.tensor(sequences[0] + sequences[1]))
    assert not (batch["input_ids"][real] == MASK).any()  # mask_replace_prob=0: all random (or same id)
    assert torch.equal(run(1)["input_ids"], batch["input_ids"])  # seeded: reproducible
    assert not torch.equal(run(2)["input_ids"], batch["input_ids"])


@pytest.mark.parametrize(
    "kwargs",
    [{"mlm_probability": 1.5}, {"mask_replace_prob": -0.1}, {"mask_replace_prob": 0.8, "random_replace_prob": 0.3}],
)
def test_mlm_rejects_bad_probabilities(kwargs):
    with pytest.raises(InputError):
        MLMCollator(MASK, PAD, VOCAB, SPECIAL, **kwargs)


def test_mlm_from_tokenizer_needs_a_mask_token():
    tokenizer = FakeTokenizer()
    tokenizer.mask_token_id = None
    with pytest.raises(InputError, match="mask token"):
        MLMCollator.from_tokenizer(tokenizer)


def words_batch(generator: torch.Generator, batch_size: int) -> tuple[list[dict], set[int]]:
    """Examples of 1-4 token words; continuation tokens are ids >= 500 (like WordPiece '##')."""
    examples = []
    for _ in range(batch_size):
        ids, word_ids = [CLS], [None]
        for word in range(int(torch.randint(10, 60, (1,), generator=generator))):
            pieces = int(torch.randint(1, 5, (1,), generator=generator))
            ids.append(int(torch.randint(10, 500, (1,), generator=generator)))
            ids += torch.randint(500, VOCAB, (pieces - 1,), generator=generator).tolist()
            word_ids += [word] * pieces
        examples.append({"input_ids": [*ids, SEP], "word_ids": [*word_ids, None]})
    return examples, set(range(500, VOCAB))


@pytest.mark.parametrize("source", ["word_ids", "continuation_ids", "is_continuation"])
def test_whole_word_masking_selects_whole_words(source):
    generator = torch.Generator().manual_seed(3)
    examples, continuation = words_batch(generator, 200)
    options = {
        "word_ids": {},
        "continuation_ids": {"continuation_ids": continuation},
        "is_continuation": {"is_continuation": lambda token: token >= 500},
    }[source]
    if source != "word_ids":
        examples = [{"input_ids": e["input_ids"]} for e in examples]
    collator = MLMCollator(MASK, PAD, VOCAB, SPECIAL, whole_word_mask=True, generator=generator, **options)
    batch = collator(examples)
    tokens = selected = partial_words = multi_token_words_selected = 0
    word_source = words_batch(torch.Generator().manual_seed(3), 200)[0]  # same words, with word_ids
    for row, example in enumerate(word_source):
        picked = (batch["labels"][row, : len(example["input_ids"])] != -100).tolist()
        words: dict[int, list[bool]] = {}
        for word, is_picked in zip(example["word_ids"], picked, strict=True):
            if word is None:
                assert not is_picked
            else:
                words.setdefault(word, []).append(is_picked)
        partial_words += sum(any(p) and not all(p) for p in words.values())
        multi_token_words_selected += sum(all(p) and len(p) > 1 for p in words.values())
        tokens += sum(len(p) for p in words.values())
        selected += sum(picked)
    assert partial_words == 0
    assert multi_token_words_selected > 100  # the check above saw many multi-token words
    # ~17k tokens in ~7k words of 1-4 tokens: sd(share) ~ 0.005 -> tolerance 0.02 (4 sd)
    assert abs(selected / tokens - 0.15) < 0.02


# ----------------------------------------------------------------------------------------------- CLM


def test_pack_documents_keeps_order_with_eos_between_documents():
    generator = torch.Generator().manual_seed(0)
    docs = [
        torch.randint(5, VOCAB, (int(n),), generator=generator).tolist()
        for n in torch.randint(1, 40, (50,), generator=generator)
    ]
    stream = [token for doc in docs for token in [*doc, SEP]]
    blocks = pack_documents(docs, 16, eos_token_id=SEP)
    assert blocks.shape == (len(stream) // 16, 16) and blocks.dtype == torch.long
    assert blocks.reshape(-1).tolist() == stream[: blocks.numel()]
    padded, mask = pack_documents(docs, 16, SEP, drop_remainder=False, pad_token_id=SEP, return_attention_mask=True)
    assert padded.shape == (math.ceil(len(stream) / 16), 16)
    assert padded.reshape(-1)[mask.reshape(-1).bool()].tolist() == stream
    assert int(mask.sum()) == len(stream) and len(stream) % 16 != 0  # so there was padding to mark
    with pytest.raises(InputError):
        pack_documents(docs, 16, SEP, drop_remainder=False)  # padding without a pad id


def test_clm_labels_ignore_padding_but_not_eos_when_pad_is_eos():
    collator = CLMCollator(pad_token_id=SEP)  # GPT-2: pad == eos
    batch = collator([[7, 8, SEP], [9]])
    assert batch["input_ids"].tolist() == [[7, 8, SEP], [9, SEP, SEP]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[7, 8, SEP], [9, -100, -100]]
    blocks, mask = pack_documents(
        [[5, 6, 7], [8]], 4, SEP, drop_remainder=False, pad_token_id=SEP, return_attention_mask=True
    )
    rows = [{"input_ids": b, "attention_mask": m} for b, m in zip(blocks, mask, strict=True)]
    assert collator(rows)["labels"].tolist() == [[5, 6, 7, SEP], [8, SEP, -100, -100]]


# ------------------------------------------------------------------------------------ span corruption


def reference_lengths(inputs_length: int, noise_density: float, mean_noise_span_length: float) -> tuple:
    """`compute_input_and_target_lengths` of transformers' former run_t5_mlm_flax.py, in numpy."""

    def _tokens_length_to_inputs_length_targets_length(tokens_length):
        num_noise_tokens = int(np.round(tokens_length * noise_density))
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = int(np.round(num_noise_tokens / mean_noise_span_length))
        return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length
    while _tokens_length_to_inputs_length_targets_length(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs_length, targets_length = _tokens_length_to_inputs_length_targets_length(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def test_compute_input_and_target_lengths_matches_reference():
    assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)
    for inputs_length in [8, 16, 33, 64, 128, 255, 256, 1024]:
        for density, mean in [(0.15, 3.0), (0.3, 2.0), (0.5, 3.0), (0.1, 5.0)]:
            assert compute_input_and_target_lengths(inputs_length, density, mean) == reference_lengths(
                inputs_length, density, mean
            ), (inputs_length, density, mean)


def test_noise_mask_has_reference_counts():
    generator = torch.Generator().manual_seed(0)
    for length in list(range(2, 80)) + [568, 1000]:
        for density, mean in [(0.15, 3.0), (0.3, 2.0), (0.5, 2.0)]:
            mask = random_spans_noise_mask(length, density, mean, generator)
            num_noise = min(max(round(length * density), 1), length - 1)
            num_spans = max(round(num_noise / mean), 1)
            starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
            assert mask.shape == (length,) and mask.dtype == torch.bool
            assert int(mask.sum()) == num_noise, (length, density)
            assert int(starts.sum()) == num_spans, (length, density)
            assert not mask[0] and mask[-1]  # starts with non-noise, ends with noise
    assert random_spans_noise_mask(1, 0.15).tolist() == [False]  # the reference's length-1 case
    with pytest.raises(InputError, match="non-noise"):  # 2 spans of noise, 1 non-noise token to split them
        random_spans_noise_mask(3, 0.5, 1.0)
    masks = torch.stack([random_spans_noise_mask(100, 0.15, 3.0, generator) for _ in range(2000)])
    noise_rate = masks.float().mean(0)  # (100,)
    assert noise_rate[0] == 0 and (noise_rate[1:] > 0.02).all()  # spans move; position 0 never noise
    assert abs(noise_rate.mean() - 0.15) < 1e-6  # exactly 15 noise tokens in each mask


def merge_back(inputs: list[int], targets: list[int], sentinels: set[int]) -> list[int]:
    """Replace each sentinel in the inputs by the tokens that follow it in the targets."""
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets:
        if token in sentinels:
            current = token
            spans[current] = []
        elif current is not None:
            spans[current].append(token)
    merged = [t for token in inputs for t in (spans.pop(token) if token in sentinels else [token])]
    assert not spans, "a target span had no sentinel in the inputs"
    return merged


def test_span_corruption_round_trip_lengths_and_sentinel_order():
    tokenizer = FakeTokenizer()
    sentinel_ids = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(100)]
    generator = torch.Generator().manual_seed(0)
    cases = [
        (int(n), d, m) for n in torch.randint(10, 300, (60,), generator=generator) for d, m in [(0.15, 3.0), (0.3, 2.5)]
    ] + [(512, 0.15, 3.0)]
    for input_length, density, mean in cases:
        collator = SpanCorruptionCollator.from_tokenizer(
            tokenizer, input_length, noise_density=density, mean_noise_span_length=mean, generator=generator
        )
        tokens_length, target_length = compute_input_and_target_lengths(input_length, density, mean)
        stream = torch.randint(5, VOCAB - 100, (3 * tokens_length + 7,), generator=generator)
        chunks = chunk_for_span_corruption(stream, input_length, density, mean)
        assert chunks.shape == (3, tokens_length)
        batch = collator(list(chunks))
        assert batch["input_ids"].shape == (3, input_length)
        assert batch["labels"].shape == (3, target_length)
        assert (batch["attention_mask"] == 1).all()
        for chunk, inputs, targets in zip(chunks, batch["input_ids"], batch["labels"], strict=True):
            assert inputs[-1] == SEP and targets[-1] == SEP
            used = [t for t in inputs.tolist() if t in set(sentinel_ids)]
            assert used == sentinel_ids[: len(used)]  # <extra_id_0>, <extra_id_1>, ... in order
            assert targets[0] == sentinel_ids[0]
            merged = merge_back(inputs[:-1].tolist(), targets[:-1].tolist(), set(sentinel_ids))
            assert merged == chunk.tolist()


def test_span_corruption_errors():
    with pytest.raises(InputError, match="sentinel"):
        SpanCorruptionCollator.from_tokenizer(FakeTokenizer(n_sentinels=0), 64)
    with pytest.raises(InputError, match="sentinel"):  # 568 tokens need 26 spans
        SpanCorruptionCollator.from_tokenizer(FakeTokenizer(n_sentinels=5), 512)
    collator = SpanCorruptionCollator.from_tokenizer(FakeTokenizer(), 64)
    with pytest.raises(InputError, match="exactly"):
        collator([list(range(10, 11 + collator.tokens_length))])
    with pytest.raises(InputError, match="too short"):  # the helper counts 0 spans, the mask 1
        SpanCorruptionCollator.from_tokenizer(FakeTokenizer(), 8)


# ----------------------------------------------------------------------------------------- BART infilling


def test_text_infilling_share_labels_and_one_mask_per_span():
    generator = torch.Generator().manual_seed(0)
    collator = TextInfillingCollator.from_tokenizer(FakeTokenizer(n_sentinels=0), generator=generator)
    maskable = removed = spans = zero_length_spans = 0
    for _ in range(15):
        # distinct ids per sequence so that the corrupted sequence aligns with the original unambiguously
        batch_originals = [
            [CLS, *(torch.randperm(VOCAB - 10, generator=generator)[: int(n)] + 10).tolist(), SEP]
            for n in torch.randint(5, 400, (16,), generator=generator)
        ]
        batch = collator(batch_originals)
        for row, original in enumerate(batch_originals):
            labels = batch["labels"][row]
            assert labels[: len(original)].tolist() == original and (labels[len(original) :] == -100).all()
            inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            assert inputs[0] == CLS and inputs[-1] == SEP
            # walk the corrupted sequence along the original: each mask token stands for one span
            # (possibly empty), and two mask tokens are never adjacent (spans are kept apart)
            position = 0
            for index, token in enumerate(inputs):
                if token == MASK:
                    assert inputs[index + 1] != MASK
                    next_kept = original.index(inputs[index + 1], position)
                    removed += next_kept - position
                    zero_length_spans += next_kept == position
                    spans += 1
                    position = next_kept
                else:
                    assert original[position] == token, "a token was dropped without a mask token"
                    position += 1
            assert position == len(original)
            maskable += len(original) - 2
    # removed / maskable is ceil(n * 0.3) / n per sequence: over ~48k tokens, 0.3 + (<= 1/n rounding)
    assert 0.3 <= removed / maskable < 0.305
    # Poisson(3) lengths, the last one per sequence trimmed: mean span length a little under 3
    assert 2.6 < removed / spans < 3.1
    # P(Poisson(3) = 0) = e^-3 ~ 0.05 of the spans are insertions
    assert 0.03 < zero_length_spans / spans < 0.07


def test_text_infilling_keeps_short_and_special_only_sequences():
    collator = TextInfillingCollator(MASK, PAD, SPECIAL, generator=torch.Generator().manual_seed(0))
    batch = collator([[CLS, SEP], [CLS, 50, SEP]])
    assert batch["input_ids"].tolist() == [[CLS, SEP, PAD], [CLS, MASK, SEP]]
    assert batch["labels"].tolist() == [[CLS, SEP, -100], [CLS, 50, SEP]]
    with pytest.raises(InputError):
        TextInfillingCollator(MASK, PAD, SPECIAL, mask_ratio=1.5)
