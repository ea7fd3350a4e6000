"""Flags that every training command shares (`pretrain`, `finetune`), and their TrainingArguments."""

from __future__ import annotations

import argparse
from typing import Any


def add_trainer_arguments(group: argparse._ArgumentGroup, *, log_every: int) -> None:
    """The trainer's flags after the ones each command sets itself (steps, lr, warmup, schedule)."""
    group.add_argument("--batch-size", type=int, default=16, help="examples per micro-batch per process")
    group.add_argument("--grad-accum", type=int, default=1)
    group.add_argument("--weight-decay", type=float, default=0.01)
    group.add_argument("--max-grad-norm", type=float, default=1.0, help="0: no clipping")
    group.add_argument("--bf16", action="store_true", help="bfloat16 autocast where the hardware has it")
    group.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: at the end)")
    group.add_argument("--eval-batches", type=int, default=16, help="batches for the held-out loss")
    group.add_argument("--save-every", type=int, default=0)
    group.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    group.add_argument("--log-every", type=int, default=log_every)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--resume", nargs="?", const=True, default=None,
                       help="continue from the newest checkpoint in --out (or from the given checkpoint folder)")
    group.add_argument("--overwrite", action="store_true", help="start over even if --out holds checkpoints")
    group.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    group.add_argument("--no-progress", action="store_true")
    group.add_argument("--no-plot", action="store_true")


def trainer_arguments(args: argparse.Namespace, **specific: Any):
    """TrainingArguments from the shared flags plus the command's own (max_steps, lr, schedule, ...)."""
    from ..training import TrainingArguments

    return TrainingArguments(
        output_dir=args.out, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, max_grad_norm=args.max_grad_norm or None,
        bf16=args.bf16, eval_every=args.eval_every, eval_batches=args.eval_batches, save_every=args.save_every,
        save_total_limit=args.keep, log_every=args.log_every, seed=args.seed, resume=args.resume,
        overwrite=args.overwrite, device=args.device, progress=not args.no_progress, plot=not args.no_plot,
        **specific)
