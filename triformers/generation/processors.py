"""Logits processors: each maps (tokens so far, next-token scores) to new scores.

They match transformers' `generation/logits_process.py` (v5.24) value for value and `build_processors` lists
them in its order (`GenerationMixin._get_logits_processor`): sequence bias, encoder repetition penalty,
repetition penalty, no-repeat n-grams (decoder, then encoder), bad words, minimum length (EOS masked),
forced BOS, forced EOS, invalid-value removal, exponential decay length penalty, suppressed tokens,
suppressed tokens at the start, the caller's own processors, then, when sampling, the filters of
`warpers.py`, and last the optional log-softmax renormalisation.
Everything that does not change between steps (token masks, ignored prompt padding, n-gram tables) is built
once per call; a step's conditions compare Python ints, so no processor synchronises with the device.
`unusable` finds the rows from which no token can be chosen (NaN scores, every token banned), which the
search loops refuse with `no_token_error` rather than sample from or argmax over.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import InputError
from .options import GenerationOptions
from .warpers import LogitNormalization, sampling_filters


class LogitsProcessor:
    """Base class of a processor, as transformers': `__call__(input_ids, scores) -> scores`, where input_ids
    (N, length) are the sequences so far and scores (N, vocab) the next token's float32 scores."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is abstract: subclass it and implement __call__")


class LogitsProcessorList(list):
    """Processors applied left to right."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores, **kwargs) if kwargs else processor(input_ids, scores)
        return scores


def _vocab_mask(token_ids, vocab_size: int, device: torch.device) -> torch.Tensor:
    """(V,) True at `token_ids` (ids outside the vocabulary are ignored, as torch.isin ignores them)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = [int(t) for t in token_ids if 0 <= int(t) < vocab_size]
    mask[ids] = True
    return mask


class RepetitionPenalty(LogitsProcessor):
    """Divide positive (multiply negative) scores of every token in `source` by `penalty`: the sequence so
    far (repetition_penalty, its left padding skipped as transformers skips it) or, with `encoder_ids`, the
    prompt (encoder_repetition_penalty, whose penalty is inverted: > 1 favours the prompt's tokens)."""

    def __init__(self, penalty: float, padding_lengths: torch.Tensor | None, total_length: int,
                 encoder_ids: torch.Tensor | None = None):
        self.penalty = penalty if encoder_ids is None else 1 / penalty
        self.encoder_ids = encoder_ids  # (B, S), repeated for the rows of each prompt when used
        self.ignore = None  # (N, total_length) True where a prompt pad sits
        if padding_lengths is not None:
            positions = torch.arange(total_length, device=padding_lengths.device)
            self.ignore = positions[None, :] < padding_lengths[:, None]

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if self.encoder_ids is not None:
            rows = scores.shape[0] // self.encoder_ids.shape[0]
            tokens = self.encoder_ids.repeat_interleave(rows, dim=0) if rows > 1 else self.encoder_ids
        elif self.ignore is not None:
            tokens = tokens.masked_fill(self.ignore[:, :tokens.shape[1]], V)  # V: a spare column, dropped below
        tokens = tokens.clamp(max=V)
        padded = torch.nn.functional.pad(scores, (0, 1))  # (N, V + 1)
        seen = torch.gather(padded, 1, tokens)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, tokens, seen)[..., :V]


class NoRepeatNGram(LogitsProcessor):
    """Ban every token that would complete an n-gram already in the sequence, or (with `encoder_ids`) one
    of the prompt's n-grams (encoder_no_repeat_ngram_size)."""

    def __init__(self, size: int, encoder_ids: torch.Tensor | None = None):
        self.size = size
        self.from_encoder = encoder_ids is not None
        self.encoder_windows = None  # (B, windows, n): the prompt's n-grams
        if encoder_ids is not None and encoder_ids.shape[1] >= size:
            self.encoder_windows = encoder_ids.unfold(dimension=1, size=size, step=1)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cur, n = tokens.shape[-1], self.size
        if self.from_encoder:
            if self.encoder_windows is None or cur < n - 1:
                return scores
            rows = scores.shape[0] // self.encoder_windows.shape[0]
            windows = self.encoder_windows.repeat_interleave(rows, dim=0) if rows > 1 else self.encoder_windows
        elif cur < n:
            return scores
        else:
            windows = tokens.unfold(dimension=1, size=n, step=1)  # (N, windows, n)
        prefix = tokens[:, cur + 1 - n:]  # (N, n-1): what the next token would complete
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, windows)
        V = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], V + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], -math.inf)


class SequenceBias(LogitsProcessor):
    """Add a bias to the last token of each sequence whenever the tokens before it end the sequence so far
    (a one-token sequence is biased at every step); bad_words_ids are sequences biased by -inf."""

    def __init__(self, biases: dict[tuple[int, ...], float], vocab_size: int, device: torch.device):
        self.single = torch.zeros(vocab_size, device=device)  # (V,)
        groups: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        for sequence, bias in biases.items():
            if len(sequence) == 1:
                self.single[sequence[0]] = bias
            else:
                groups.setdefault(len(sequence) - 1, []).append((sequence, bias))
        self.groups = [(torch.tensor([s[:-1] for s, _ in group], device=device),  # (G, prefix length)
                        torch.tensor([s[-1] for s, _ in group], device=device),  # (G,)
                        torch.tensor([b for _, b in group], device=device)) for group in groups.values()]

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        bias = self.single.expand_as(scores).clone()
        for prefixes, last, values in self.groups:
            if prefixes.shape[1] > tokens.shape[1]:
                continue
            matching = (tokens[:, None, -prefixes.shape[1]:] == prefixes).all(dim=-1)  # (N, G)
            bias.index_add_(1, last, torch.where(matching, values, 0.0))
        return scores + bias


class SuppressWhile(LogitsProcessor):
    """Scores of `token_ids` are -inf while the sequence is shorter than `until` (min_length, min_new_tokens),
    or only when it is exactly `at` long (begin_suppress_tokens), or always (suppress_tokens)."""

    def __init__(self, token_ids, vocab_size: int, device: torch.device, until: int | None = None,
                 at: int | None = None):
        self.mask = _vocab_mask(token_ids, vocab_size, device)
        self.until, self.at = until, at

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[-1]
        if (self.until is not None and length >= self.until) or (self.at is not None and length != self.at):
            return scores
        return torch.where(self.mask, -math.inf, scores)


class ForceAt(LogitsProcessor):
    """At sequence length `length`, only `token_ids` may come next (forced BOS at 1, forced EOS at max - 1)."""

    def __init__(self, length: int, token_ids: tuple[int, ...]):
        self.length, self.token_ids = length, list(token_ids)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.length:
            return scores
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.token_ids] = 0
        return forced


class InfNanRemove(LogitsProcessor):
    """remove_invalid_values: NaN -> 0, +-inf -> the largest / smallest float."""

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        info = torch.finfo(scores.dtype)
        out = torch.where(scores != scores, 0.0, scores)
        out = torch.where(scores == math.inf, info.max, out)
        return torch.where(scores == -math.inf, info.min, out)


class ExponentialDecayLengthPenalty(LogitsProcessor):
    """After `start` new tokens, raise the EOS scores by |score| * (factor ** steps - 1), steps counted past
    the start: an ever stronger pull towards ending, without a hard cut."""

    def __init__(self, start: int, factor: float, eos_token_ids: tuple[int, ...], prompt_length: int):
        self.start, self.factor, self.eos = start + prompt_length, factor, list(eos_token_ids)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[-1]
        if length <= self.start:
            return scores
        eos_scores = scores[:, self.eos]
        penalty = torch.abs(eos_scores) * (pow(self.factor, length - self.start) - 1)
        penalties = torch.zeros_like(scores)
        penalties[:, self.eos] = penalty.masked_fill(~torch.isfinite(eos_scores), 0.0)
        return scores + penalties


def unusable(scores: torch.Tensor) -> torch.Tensor:
    """(N,) True for rows of (N, V) scores from which no token can be chosen: a NaN score (NaN logits, an
    overflow turned NaN), or every score -inf (every token banned)."""
    return scores.isnan().any(dim=-1) | torch.isneginf(scores).all(dim=-1)


def no_token_error(options: GenerationOptions, step: int | None) -> InputError:
    where = f"at new token {step + 1}" if step is not None else "while generating"
    return InputError(f"generate: {where} no token could be chosen: the scores are NaN or every token is banned. "
                      "NaN comes from the model (NaN or infinite weights) or from extreme settings (repetition_penalty="
                      f"{options.repetition_penalty}, temperature={options.temperature}); every token is banned by "
                      f"min_new_tokens={options.min_new_tokens} / min_length={options.min_length} with "
                      f"eos_token_id={list(options.eos_token_ids)[:8]}, no_repeat_ngram_size="
                      f"{options.no_repeat_ngram_size}, bad_words_ids, suppress_tokens or the forced tokens")


def build_processors(options: GenerationOptions, prompt_length: int, vocab_size: int,
                     padding_lengths: torch.Tensor | None, encoder_ids: torch.Tensor | None,
                     user: list | None, device: torch.device) -> LogitsProcessorList:
    """The processors of one generate call, in transformers' order.

    prompt_length: decoder positions before the first new token; padding_lengths: (N,) left-padding widths
    of the expanded rows, or None; encoder_ids: (B, S) the prompt (input_ids) for the encoder_* processors;
    user: the caller's `logits_processor` list, which runs before the sampling filters.
    """
    o, out = options, LogitsProcessorList()
    total, eos = o.max_length, o.eos_token_ids
    if o.sequence_bias:
        out.append(SequenceBias(o.sequence_bias, vocab_size, device))
    if o.encoder_repetition_penalty != 1.0 and encoder_ids is not None:
        out.append(RepetitionPenalty(o.encoder_repetition_penalty, None, total, encoder_ids=encoder_ids))
    if o.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(o.repetition_penalty, padding_lengths, total))
    if o.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(o.no_repeat_ngram_size))
    if o.encoder_no_repeat_ngram_size > 0 and encoder_ids is not None:
        out.append(NoRepeatNGram(o.encoder_no_repeat_ngram_size, encoder_ids=encoder_ids))
    if o.bad_words_ids is not None:
        banned = [s for s in o.bad_words_ids if not (len(s) == 1 and s[0] in eos)]  # EOS is never a bad word
        out.append(SequenceBias(dict.fromkeys(banned, -math.inf), vocab_size, device))
    if o.min_length > 0 and eos:
        out.append(SuppressWhile(eos, vocab_size, device, until=o.min_length))
    if o.forced_bos_token_id is not None:
        out.append(ForceAt(1, (o.forced_bos_token_id,)))
    if o.forced_eos_token_ids:
        out.append(ForceAt(total - 1, o.forced_eos_token_ids))
    if o.remove_invalid_values:
        out.append(InfNanRemove())
    if o.exponential_decay_length_penalty is not None and eos:
        out.append(ExponentialDecayLengthPenalty(*o.exponential_decay_length_penalty, eos, prompt_length))
    if o.suppress_tokens is not None:
        out.append(SuppressWhile(o.suppress_tokens, vocab_size, device))
    if o.begin_suppress_tokens is not None:
        begin = prompt_length + (1 if prompt_length == 1 and o.forced_bos_token_id is not None else 0)
        out.append(SuppressWhile(o.begin_suppress_tokens, vocab_size, device, at=begin))
    out.extend(user or [])
    if o.do_sample:
        # beam sampling keeps one non-EOS candidate beyond the EOS ids, as transformers does
        keep = (len(eos) + 1 if eos else 2) if o.num_beams > 1 else 1
        out.extend(sampling_filters(o, keep, device))
    if o.renormalize_logits:
        out.append(LogitNormalization())
    return out
