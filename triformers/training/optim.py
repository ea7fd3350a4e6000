"""AdamW with transformers' parameter groups, and the learning-rate schedule (warmup, then linear / cosine decay or
constant; transformers' "constant" has no warmup), as transformers' `get_scheduler` computes it: the lr of
optimizer step s (0-based) is peak x s / warmup during warmup, so its first step has lr 0 unless
`warmup_from_first_step`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import TrainingError
from ..layers.positions import RelativePositionBias
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
        return peak * (step + int(args.warmup_from_first_step)) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if args.lr_scheduler_type == "cosine":
        ratio = 0.5 * (1 + math.cos(math.pi * progress))
    elif args.lr_scheduler_type == "linear":
        ratio = 1 - progress
    else:  # constant_with_warmup
        return peak
    return peak * (args.min_lr_ratio + (1 - args.min_lr_ratio) * ratio)


def parameter_groups(model: nn.Module, args: TrainingArguments) -> list[dict]:
    """transformers' two groups: weight decay except on biases and norms (the 1-D tensors here) and T5's relative
    position bias tables (named "bias" in its checkpoints); without `embedding_weight_decay` not on embeddings
    either."""
    exempt = {id(p) for m in model.modules() if isinstance(m, RelativePositionBias) for p in m.parameters()}
    if not args.embedding_weight_decay:
        exempt |= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.dim() < 2 or id(param) in exempt else decay).append(param)
    return [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_scheduler(optimizer: torch.optim.Optimizer, args: TrainingArguments,
                    max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule as transformers' `get_scheduler` makes it: a LambdaLR scaling each group's initial lr by
    `learning_rate(step) / args.learning_rate`."""
    peak = args.learning_rate
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, args, max_steps) / peak if peak else 0.0)


def build_optimizer(model: nn.Module, args: TrainingArguments,
                    optimizer_cls_and_kwargs: tuple[type, dict] | None = None) -> torch.optim.Optimizer:
    """AdamW (fused where torch has it, as transformers' default `adamw_torch_fused`) over `parameter_groups`, or
    the Trainer's `optimizer_cls_and_kwargs` (class, its keyword arguments, lr among them) over the same groups."""
    groups = parameter_groups(model, args)
    if optimizer_cls_and_kwargs is not None:
        optimizer_cls, kwargs = optimizer_cls_and_kwargs
        return optimizer_cls(groups, **kwargs)
    decay, no_decay = groups[0]["params"], groups[1]["params"]
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in decay + no_decay)
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, **kwargs)
