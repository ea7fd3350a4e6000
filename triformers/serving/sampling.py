"""Next tokens for a batch of sequences that each carry their own settings (one row per running sequence).

Every row has its own temperature (0: greedy), nucleus `top_p`, presence and frequency penalties (OpenAI's:
subtracted from the logits of tokens already generated, once for presence and once per occurrence for
frequency), and random generator (seeded per request, so that a seeded request draws the same tokens
whatever else runs beside it). The work is vectorised over rows; only the uniform draws are per row, from
each row's own generator, turned into tokens by inverse-CDF sampling. Log-probabilities are those of the
model's own distribution (before penalties, temperature and top-p), as OpenAI's `logprobs` report them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RowSettings:
    """One sequence's sampling settings, as parsed from a request."""

    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None  # None: no log-probabilities; k >= 0: the chosen token's and k alternatives

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Choice:
    """The token picked for a row, and its log-probabilities when asked for."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def penalize(logits: torch.Tensor, counts: torch.Tensor, settings: list[RowSettings]) -> torch.Tensor:
    """logits (A, V) minus presence * [count > 0] + frequency * count, per row; `counts` (A, V) float."""
    presence = torch.tensor([s.presence_penalty for s in settings], device=logits.device)[:, None]
    frequency = torch.tensor([s.frequency_penalty for s in settings], device=logits.device)[:, None]
    return logits - presence * (counts > 0) - frequency * counts


def choose(logits: torch.Tensor, counts: torch.Tensor, settings: list[RowSettings],
           generators: list[torch.Generator | None]) -> list[Choice]:
    """One token per row of `logits` (A, V) float32; `counts` (A, V): each row's generated token counts."""
    scores = logits
    if any(s.presence_penalty or s.frequency_penalty for s in settings):
        scores = penalize(logits, counts, settings)
    tokens = scores.argmax(-1)  # (A,)
    sampled = [i for i, s in enumerate(settings) if not s.greedy]
    if sampled:
        index = torch.tensor(sampled, device=logits.device)
        tokens[index] = _sample(scores.index_select(0, index), [settings[i] for i in sampled],
                                [generators[i] for i in sampled])
    choices = [Choice(int(t)) for t in tokens.tolist()]
    wanted = [i for i, s in enumerate(settings) if s.top_logprobs is not None]
    if wanted:
        index = torch.tensor(wanted, device=logits.device)
        logprobs = torch.log_softmax(logits.index_select(0, index), dim=-1)  # (W, V)
        k = max(settings[i].top_logprobs for i in wanted)
        top_values, top_ids = logprobs.topk(max(k, 1), dim=-1)
        chosen = logprobs.gather(1, tokens.index_select(0, index)[:, None])[:, 0]
        for j, i in enumerate(wanted):
            n = settings[i].top_logprobs
            choices[i].logprob = float(chosen[j])
            choices[i].top = list(zip(top_ids[j, :n].tolist(), top_values[j, :n].tolist(), strict=True))
    return choices


def _sample(scores: torch.Tensor, settings: list[RowSettings],
            generators: list[torch.Generator | None]) -> torch.Tensor:
    """(S,) tokens drawn from softmax(scores / temperature), restricted to each row's top-p nucleus."""
    temperature = torch.tensor([s.temperature for s in settings], device=scores.device)[:, None]
    probs = torch.softmax(scores / temperature, dim=-1)  # (S, V)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    top_p = torch.tensor([s.top_p for s in settings], device=scores.device)[:, None]
    before = sorted_probs.cumsum(-1) - sorted_probs  # probability of the tokens ranked above each one
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the first token always stays
    cdf = sorted_probs.cumsum(-1)
    draws = torch.cat([torch.rand(1, generator=g, device=scores.device) for g in generators])  # (S,)
    picked = torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None], right=True).clamp_(max=cdf.shape[1] - 1)
    return order.gather(1, picked)[:, 0]
