"""AdamW with the usual parameter groups, and the learning-rate schedule (warmup, then cosine / linear / constant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .arguments import TrainingArguments


def learning_rate(step: int, args: TrainingArguments) -> float:
    """lr for optimizer step `step` (0-based): linear warmup, then cosine / linear decay / constant."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    if args.schedule == "cosine":
        ratio = 0.5 * (1 + math.cos(math.pi * progress))
    elif args.schedule == "linear":
        ratio = 1 - progress
    else:
        ratio = 1.0
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * ratio)


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
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas, eps=args.eps, **kwargs)
