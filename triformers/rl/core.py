"""The small pieces PPO is built from, as trl 0.11 has them in `trl.core` and `trl.trainer.utils`: masked
statistics, log-probabilities and entropy from logits, the KL controllers of Ziegler et al. (2019,
arXiv:1909.08593), and `LengthSampler` (`from triformers.rl.core import LengthSampler`, as `trl.core`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

WANDB_PADDING = -1  # trl pads ragged per-minibatch statistics with it


class LengthSampler:
    """A length drawn uniformly from [min_value, max_value) each call (numpy's global generator, as trl)."""

    def __init__(self, min_value: int, max_value: int):
        self.values = list(range(min_value, max_value))

    def __call__(self) -> int:
        return int(np.random.choice(self.values))


class AdaptiveKLController:
    """The KL coefficient nudged each step towards `target` KL (proportional error clipped to +-0.2)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current: float, n_steps: int) -> None:
        proportional_error = float(np.clip(current / self.target - 1, -0.2, 0.2))
        self.value *= 1 + proportional_error * n_steps / self.horizon


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current: float, n_steps: int) -> None:
        pass


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    if axis is not None:
        return (values * mask).sum(axis=axis) / mask.sum(axis=axis)
    return (values * mask).sum() / mask.sum()


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count > 1:  # trl raises on a single element; one token of response is a legal (if odd) batch
            variance = variance * count / (count - 1)
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) log-probabilities of `labels` under (B, T, V) logits."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, labels.unsqueeze(2)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T) entropy of each position's distribution."""
    pd = torch.softmax(logits.float(), dim=-1)
    return torch.logsumexp(logits.float(), dim=-1) - (pd * logits.float()).sum(-1)


def clip_by_value(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    return torch.max(torch.min(x, high), low)


def flatten_dict(nested: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def recurse(part: Mapping[str, Any], prefix: str) -> None:
        for key, value in part.items():
            if isinstance(value, Mapping):
                recurse(value, prefix + key + sep)
            else:
                flat[prefix + key] = value

    recurse(nested, "")
    return flat


def stack_dicts(dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each key's values across minibatches, flattened and padded into rows."""
    return {key: torch.nn.utils.rnn.pad_sequence([torch.flatten(d[key]) for d in dicts], batch_first=True,
                                                 padding_value=WANDB_PADDING) for key in dicts[0]}


def to_scalars(stats: dict[str, Any]) -> dict[str, Any]:
    """Tensors to numpy, one-element ones to Python floats (trl's `stats_to_np` then `convert_to_scalar`)."""
    out = {}
    for key, value in stats.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().float().numpy()
        if isinstance(value, np.ndarray) and value.size == 1 and value.ndim <= 1:
            value = float(value.reshape(()))
        out[key] = value
    return out
