"""CLI verbs that train: `triformers pretrain` (any family from scratch) and `triformers finetune` (a task).

Their flags are generated from `PretrainOptions` / `FinetuneOptions` (see `flags.py`), so every default and
help text lives in those dataclasses:

    triformers pretrain                                                   # GPT-2 (CLM) on the stdlib docstrings
    triformers pretrain --family encoder --steps 200 --out runs/bert
    triformers pretrain --dialect t5 --data corpus/ --layers 4 --hidden-size 256 --bf16 --out runs/t5
    triformers pretrain --dialect t5 --data corpus/ --out runs/t5 --resume  # continue from the last checkpoint
    torchrun --nproc_per_node=4 -m triformers pretrain --family encoder --data corpus/ --out runs/bert
    triformers finetune --task text-classification --model bert-dir --train train.csv --eval test.csv --out sst
    triformers dpo --model gpt2-dir --data prefs.jsonl --out tuned     # DPO (`triformers.rl.command`)
"""

from __future__ import annotations

import argparse

from ..finetuning import FinetuneOptions, finetune
from ..pretraining import PretrainOptions, pretrain
from ..rl.command import DpoOptions, dpo
from .flags import add_flags, parse_flags
from .registry import Command, register


def _run_pretrain(args: argparse.Namespace) -> int:
    options = parse_flags(PretrainOptions, args)
    result = pretrain(options)
    summary = f"done: {result.step} steps, {result.tokens} tokens in {result.seconds:.1f}s, last loss {result.loss:.4f}"
    if result.eval_loss is not None:
        summary += f", held-out loss {result.eval_loss:.4f} (perplexity {result.eval_perplexity:.1f})"
    print(f"{summary}; checkpoint in {options.training.output_dir}")
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    options = parse_flags(FinetuneOptions, args)
    result = finetune(options)
    run = result.training
    print(f"done: {run.step} steps in {run.seconds:.1f}s, last loss {run.loss:.4f}; model in "
          f"{options.training.output_dir}")
    for name, value in result.metrics.items():
        print(f"  {name}: {value:.4f}")
    return 0


def _run_dpo(args: argparse.Namespace) -> int:
    options = parse_flags(DpoOptions, args)
    metrics = dpo(options)
    print(f"done: model in {options.training.output_dir}")
    for name in sorted(k for k in metrics if "rewards/" in k or k.endswith("loss")):
        print(f"  {name}: {metrics[name]:.4f}")
    return 0


register(Command("pretrain", "pre-train a model of any family from scratch",
                 lambda parser: add_flags(parser, PretrainOptions, "what to train"), _run_pretrain))
register(Command("finetune", "fine-tune a model: text / token classification, extractive QA, seq2seq",
                 lambda parser: add_flags(parser, FinetuneOptions, "task and data"), _run_finetune))
register(Command("dpo", "preference-tune a model with DPO on prompt / chosen / rejected pairs",
                 lambda parser: add_flags(parser, DpoOptions, "model and data"), _run_dpo))
