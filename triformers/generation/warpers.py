"""The sampling filters (transformers' "logits warpers", `generation/logits_process.py` v5.24), applied only
when `do_sample=True`, in transformers' order: temperature, top-h, top-k, top-p, min-p, typical-p,
epsilon and eta cutoffs. Each keeps at least `min_tokens_to_keep` tokens (beam sampling keeps one
candidate beyond the EOS ids). Filtered tokens get -inf.
"""

from __future__ import annotations

import math

import torch

from .options import GenerationOptions


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


class TopH:
    """Top-H (Potraghloo et al. 2025): of the 100 most likely tokens, keep the most likely ones while their
    cumulative entropy stays within `top_h` times the entropy of those 100."""

    TOP_N = 100

    def __init__(self, top_h: float):
        self.top_h = top_h

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        top, index = torch.topk(scores, min(self.TOP_N, scores.shape[-1]), dim=-1)  # sorted, (N, n)
        distribution = torch.distributions.Categorical(logits=top)
        probs = distribution.probs
        budget = (distribution.entropy() * self.top_h).unsqueeze(-1)  # (N, 1)
        selected = torch.cumsum(-probs * torch.log(probs), dim=-1) <= budget
        selected[:, 0] = True
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, index, selected)
        return scores.masked_fill(~keep, -math.inf)


class MinP:
    """Keep tokens whose probability is at least `min_p` times the most likely token's."""

    def __init__(self, min_p: float, min_tokens_to_keep: int):
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        best = torch.topk(probs, min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        remove.scatter_(-1, best, False)
        return scores.masked_fill(remove, -math.inf)


class Typical:
    """Locally typical sampling (Meister et al. 2022): keep the tokens whose surprisal is closest to the
    entropy, until their probabilities add up to `mass`."""

    def __init__(self, mass: float, min_tokens_to_keep: int):
        self.mass, self.min_tokens_to_keep = mass, min_tokens_to_keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        log_probs = torch.nn.functional.log_softmax(scores, dim=-1)
        entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
        distance, order = torch.sort(torch.abs(-log_probs - entropy), descending=False)
        cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=distance.shape[-1] - 1)
        remove = distance > distance.gather(1, last.view(-1, 1))
        remove[..., :self.min_tokens_to_keep] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


class Cutoff:
    """Epsilon sampling (a token needs probability >= epsilon) or, with `eta`, eta sampling (the cutoff is
    min(epsilon, sqrt(epsilon) * exp(-entropy))), Hewitt et al. 2022; the best `min_tokens_to_keep` stay."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int, eta: bool, device: torch.device):
        self.epsilon = torch.tensor(epsilon, device=device) if eta else epsilon
        self.eta, self.min_tokens_to_keep = eta, min_tokens_to_keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        cutoff = self.epsilon
        if self.eta:
            entropy = torch.distributions.Categorical(logits=scores).entropy()
            cutoff = torch.min(self.epsilon, torch.sqrt(self.epsilon) * torch.exp(-entropy))[..., None]
        kth = torch.topk(scores, min(self.min_tokens_to_keep, scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill((probs < cutoff) & (scores < kth), -math.inf)


class LogitNormalization:
    """renormalize_logits: log-softmax over the processed scores (always the last processor)."""

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.log_softmax(dim=-1)


def sampling_filters(options: GenerationOptions, keep: int, device: torch.device) -> list:
    """The filters `options` asks for, in transformers' order (`keep`: min_tokens_to_keep)."""
    o, out = options, []
    if o.temperature != 1.0:
        out.append(Temperature(o.temperature))
    if o.top_h is not None:
        out.append(TopH(o.top_h))
    if o.top_k is not None:
        out.append(TopK(o.top_k, keep))
    if o.top_p is not None and o.top_p < 1.0:
        out.append(TopP(o.top_p, keep))
    if o.min_p is not None:
        out.append(MinP(o.min_p, keep))
    if o.typical_p is not None and o.typical_p < 1.0:
        out.append(Typical(o.typical_p, keep))
    if 0.0 < o.epsilon_cutoff < 1.0:
        out.append(Cutoff(o.epsilon_cutoff, keep, eta=False, device=device))
    if 0.0 < o.eta_cutoff < 1.0:
        out.append(Cutoff(o.eta_cutoff, keep, eta=True, device=device))
    return out
