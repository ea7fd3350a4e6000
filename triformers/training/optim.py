"""AdamW with the usual parameter groups, and the learning-rate schedule (warmup, then linear / cosine decay or
constant; transformers' "constant" has no warmup)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import TrainingError
from .arguments import TrainingArguments
from .plan import warmup_steps


def learning_rate(step: int, args: TrainingArguments, max_steps: int | None = None) -> float:
    """lr for optimizer step `step` (0-based) of a run of `max_steps` (default `args.max_steps`): linear warmup,
    then linear / cosine decay to `min_lr_ratio * learning_rate`, or constant."""
    total = args.max_steps if max_steps is None else max_steps
    if total < 1:
        raise TrainingError("learning_rate: the run's length is unknown (max_steps is -1): pass max_steps")
    peak, warmup = args.learning_rate, warmup_steps(args, total)
    if args.lr_scheduler_type == "constant":
        return peak
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if args.lr_scheduler_type == "cosine":
        ratio = 0.5 * (1 + math.cos(math.pi * progress))
    elif args.lr_scheduler_type == "linear":
        ratio = 1 - progress
    else:  # constant_with_warmup
        return peak
    return peak * (args.min_lr_ratio + (1 - args.min_lr_ratio) * ratio)


def build_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.AdamW:
    """AdamW; no weight decay on 1-D tensors (biases, norms) and on embedding tables."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.dim() < 2 or id(param) in embeddings else decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in decay + no_decay)
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, **kwargs)
