"""Logits processors: each maps (tokens so far, next-token scores) to new scores.

They match transformers' `generation/logits_process.py` (v5.24) value for value and are applied in
its order (`GenerationMixin._get_logits_processor`): repetition penalty, no-repeat n-grams, minimum
new tokens (EOS masked), forced BOS, forced EOS, then, when sampling, temperature, top-k, top-p.
Everything that does not change between steps (EOS masks, ignored prompt padding) is built once;
a step's conditions compare Python ints, so no processor synchronises with the device.
`unusable` finds the rows from which no token can be chosen (NaN scores, every token banned), which
the search loops refuse with `no_token_error` rather than sample from or argmax over.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .options import GenerationOptions


class RepetitionPenalty:
    """Divide positive (multiply negative) scores of every token already in the sequence by `penalty`.

    Left padding of the prompt is not counted, as in transformers (`prompt_ignore_length` = the
    position of the first attended token of each row).
    """

    def __init__(self, penalty: float, padding_lengths: torch.Tensor | None, total_length: int):
        self.penalty = penalty
        self.ignore = None  # (N, total_length) True where a prompt pad sits
        if padding_lengths is not None:
            positions = torch.arange(total_length, device=padding_lengths.device)
            self.ignore = positions[None, :] < padding_lengths[:, None]

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if self.ignore is not None:
            tokens = tokens.masked_fill(self.ignore[:, :tokens.shape[1]], V)  # V: a spare column, dropped below
        tokens = tokens.clamp(max=V)
        padded = torch.nn.functional.pad(scores, (0, 1))  # (N, V + 1)
        seen = torch.gather(padded, 1, tokens)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, tokens, seen)[..., :V]


class NoRepeatNGram:
    """Ban every token that would complete an n-gram already present in the sequence."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cur = tokens.shape[-1]
        if cur < self.size:
            return scores
        prefix = tokens[:, cur + 1 - self.size:]  # (N, n-1): the n-gram the next token would complete
        windows = tokens.unfold(dimension=1, size=self.size, step=1)  # (N, windows, n)
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, windows)
        V = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], V + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], -math.inf)


class SuppressUntil:
    """Scores of `token_ids` are -inf while the sequence is shorter than `length` (min_new_tokens)."""

    def __init__(self, length: int, token_ids: tuple[int, ...], vocab_size: int, device: torch.device):
        self.length = length
        self.mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.mask[list(token_ids)] = True

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] < self.length:
            return torch.where(self.mask, -math.inf, scores)
        return scores


class ForceAt:
    """At sequence length `length`, only `token_ids` may come next (forced BOS at 1, forced EOS at max - 1)."""

    def __init__(self, length: int, token_ids: tuple[int, ...]):
        self.length, self.token_ids = length, list(token_ids)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.length:
            return scores
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.token_ids] = 0
        return forced


class Temperature:
    """Scores divided by the temperature. A row in which that overflows to +inf (a tiny temperature) is
    divided after subtracting its maximum instead: the same distribution (softmax ignores a shift), which
    the +inf would have made NaN; other rows are divided as transformers divides them."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scaled = scores / self.temperature
        if self.temperature < 1.0:
            overflow = (torch.isposinf(scaled) & ~torch.isposinf(scores)).any(dim=-1, keepdim=True)  # (N, 1)
            shifted = (scores - scores.amax(dim=-1, keepdim=True)) / self.temperature
            scaled = torch.where(overflow, shifted, scaled)
        return scaled


class TopK:
    """Keep the `k` highest scores (ties with the k-th kept too, as in transformers)."""

    def __init__(self, k: int, min_tokens_to_keep: int):
        self.k = max(k, min_tokens_to_keep)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]  # (N, 1)
        return scores.masked_fill(scores < kth, -math.inf)


class TopP:
    """Keep the smallest set of tokens whose probabilities sum above `p` (nucleus sampling)."""

    def __init__(self, p: float, min_tokens_to_keep: int):
        self.p, self.min_tokens_to_keep = p, min_tokens_to_keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.p)
        remove[..., -self.min_tokens_to_keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


def unusable(scores: torch.Tensor) -> torch.Tensor:
    """(N,) True for rows of (N, V) scores from which no token can be chosen: a NaN score (NaN logits, an
    overflow turned NaN), or every score -inf (every token banned)."""
    return scores.isnan().any(dim=-1) | torch.isneginf(scores).all(dim=-1)


def no_token_error(options: GenerationOptions, step: int | None) -> InputError:
    where = f"at new token {step + 1}" if step is not None else "while generating"
    return InputError(f"generate: {where} no token could be chosen: the scores are NaN or every token is banned. "
                      "NaN comes from the model (NaN or infinite weights) or from extreme settings (repetition_penalty="
                      f"{options.repetition_penalty}, temperature={options.temperature}); every token is banned by "
                      f"min_new_tokens={options.min_new_tokens} with eos_token_id={list(options.eos_token_ids)[:8]}, "
                      f"no_repeat_ngram_size={options.no_repeat_ngram_size} or the forced tokens")


class Processors(list):
    """An ordered list of processors, applied left to right."""

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(tokens, scores)
        return scores


def build_processors(options: GenerationOptions, prompt_length: int, vocab_size: int,
                     padding_lengths: torch.Tensor | None, device: torch.device) -> Processors:
    """The processors of one generate call, in transformers' order.

    prompt_length: positions before the first generated token (decoder prompt); padding_lengths:
    (N,) left-padding widths of the expanded rows, or None without padding.
    """
    total = prompt_length + options.max_new_tokens
    out = Processors()
    if options.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(options.repetition_penalty, padding_lengths, total))
    if options.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(options.no_repeat_ngram_size))
    if options.min_new_tokens > 0 and options.eos_token_ids:
        out.append(SuppressUntil(prompt_length + options.min_new_tokens, options.eos_token_ids, vocab_size, device))
    if options.forced_bos_token_id is not None:
        out.append(ForceAt(1, (options.forced_bos_token_id,)))
    if options.forced_eos_token_ids:
        out.append(ForceAt(total - 1, options.forced_eos_token_ids))
    if options.do_sample:
        # beam sampling keeps one non-EOS candidate beyond the EOS ids, as transformers does
        keep = (len(options.eos_token_ids) + 1 if options.eos_token_ids else 2) if options.num_beams > 1 else 1
        if options.temperature != 1.0:
            out.append(Temperature(options.temperature))
        if options.top_k is not None:
            out.append(TopK(options.top_k, keep))
        if options.top_p is not None and options.top_p < 1.0:
            out.append(TopP(options.top_p, keep))
    return out
