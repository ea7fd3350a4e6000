"""Fine-tune a pre-trained model on a task, on the pre-training Trainer (progress, checkpoints, resume, plot).

Tasks (`--task`), their data files, the Auto class loaded, and the held-out metrics:
- text-classification: CSV / TSV / JSONL with `text`, `label` (a name or an id) and optional `text_pair`;
  AutoModelForSequenceClassification; accuracy and macro-F1 (scikit-learn).
- token-classification: JSONL with `tokens` (words) and `ner_tags` (names, or ids with `--labels`);
  AutoModelForTokenClassification; entity-level precision / recall / F1 (seqeval), token accuracy.
- question-answering: SQuAD-style JSON (`data[].paragraphs[].{context, qas[]}`, v1 or v2);
  AutoModelForQuestionAnswering; exact match and F1 with SQuAD's answer normalisation.
- seq2seq (summarization, translation, any text-to-text): JSONL with `source`, `target`;
  AutoModelForSeq2SeqLM; ROUGE-1/2/L (rouge-score), BLEU (sacrebleu, 0-100), exact match.

    triformers finetune --task text-classification --model bert-dir --train train.csv --eval test.csv --out sst
    triformers finetune --task token-classification --model bert-dir --train ner.jsonl --eval dev.jsonl --out ner
    triformers finetune --task question-answering --model bert-dir --train squad.json --max-length 384 --out qa
    triformers finetune --task seq2seq --model t5-dir --source-prefix "summarize: " --train s.jsonl --out summ

Label names are sorted (`O` first for tags) unless `--labels` gives the order, or the model's own
config already names them all (fine-tuning a fine-tuned model keeps its ids); they go into config.json's
`id2label`, so the output folder (config, model.safetensors, tokenizer) loads back with the Auto classes
and the pipelines. The task's metrics on the whole eval file are logged (metrics.jsonl) next to every
held-out loss, and the last ones written to `eval_results.json`; all are fractions in [0, 1] except BLEU.
`--epochs` sets the number of optimizer steps from the number of training examples (QA: windows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .auto import AutoConfig
from .cli_args import add_trainer_arguments, trainer_arguments
from .finetune_data import FinetuneError, PaddingCollator
from .finetune_tasks import TASKS
from .tokenization import AutoTokenizer, Tokenizer
from .training import Trainer, TrainingArguments, TrainResult, init_distributed


@dataclass
class FinetuneOptions:
    """What `triformers finetune` does; its flags parse into this."""

    task: str  # text-classification | token-classification | question-answering | seq2seq
    model: str  # folder or hub id of the pre-trained model (and its tokenizer)
    train: str
    eval: str | None = None
    epochs: float | None = 3.0  # None: train `training.max_steps` steps
    warmup: float = 0.1  # below 1: a fraction of the steps; else a number of steps
    max_length: int = 128  # tokens per input (QA: per window)
    labels: list[str] | None = None  # label names in id order (needed for integer NER tags)
    doc_stride: int = 64  # QA: tokens shared by neighbouring windows of a long context
    source_prefix: str = ""  # seq2seq: put before every source ("summarize: " for T5)
    max_target_length: int = 64  # seq2seq: target tokens, and new tokens generated at evaluation
    num_beams: int = 1  # seq2seq: beam width at evaluation
    eval_batch_size: int = 32
    group_by_length: bool = True  # micro-batches of similar lengths: less padding (transformers' group_by_length)
    training: TrainingArguments = field(default_factory=lambda: TrainingArguments(
        output_dir="finetuned", lr=5e-5, schedule="linear", betas=(0.9, 0.999), log_every=10))


@dataclass
class FinetuneResult:
    training: TrainResult
    metrics: dict[str, float]  # the last held-out evaluation (empty without an eval file)
    model: nn.Module  # the fine-tuned model, in training mode (what output_dir holds)
    tokenizer: Tokenizer


# ---- batching ---------------------------------------------------------------------------------------------
class LengthGroupedBatches:
    """Features cut once into micro-batches of similar length, for a Trainer with batch_size 1.

    A seeded shuffle, then sorting by length inside windows of 50 batches (as transformers'
    group_by_length), so a batch pads to about its own length instead of the longest of a random
    draw (half the work on short, varied texts). The Trainer reshuffles the batches every epoch; the
    batches themselves stay the same.
    """

    def __init__(self, features: list[dict[str, Any]], batch_size: int, seed: int, window: int = 50):
        order = np.random.default_rng(seed).permutation(len(features)).tolist()
        self.batches = []
        for first in range(0, len(order), window * batch_size):
            ranked = sorted(order[first:first + window * batch_size], key=lambda i: len(features[i]["input_ids"]))
            self.batches += [[features[i] for i in ranked[j:j + batch_size]] for j in range(0, len(ranked), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        return self.batches[index]


def batching(options: FinetuneOptions, args: TrainingArguments, train: list, held_out: list, pad_token_id: int):
    """(trainer arguments, train data, eval data, train collator, eval collator), grouped by length or not."""
    collator = PaddingCollator(pad_token_id)
    if not options.group_by_length:
        return args, train, held_out, collator, collator
    flat = lambda groups: collator([feature for group in groups for feature in group])
    grouped = [LengthGroupedBatches(data, size, args.seed) if data else [] for data, size in
               ((train, args.batch_size), (held_out, options.eval_batch_size))]
    return dataclasses.replace(args, batch_size=1), grouped[0], grouped[1], flat, flat


# ---- the run ------------------------------------------------------------------------------------------------
class FinetuneTrainer(Trainer):
    """The Trainer, with the task's metrics on the whole eval file next to every held-out loss it logs."""

    def __init__(self, *args: Any, metrics: Callable[[nn.Module], dict[str, float]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def _eval_record(self) -> dict[str, float]:
        record = super()._eval_record()
        if record and self.dist.is_main:  # generation / span search runs once, on the process that logs
            record.update(self.metrics(self.model))
        return record


def training_arguments(options: FinetuneOptions, examples: int) -> TrainingArguments:
    """options.training with the steps (from --epochs) and the warmup (from a fraction) worked out."""
    args = options.training
    steps = args.max_steps
    if options.epochs is not None:
        world = init_distributed(args.device).world_size
        steps = max(1, math.ceil(options.epochs * examples / (args.batch_size * args.grad_accum * world)))
    warmup = round(options.warmup * steps) if options.warmup < 1 else int(options.warmup)
    return dataclasses.replace(args, max_steps=steps, warmup_steps=min(warmup, steps))


def finetune(options: FinetuneOptions) -> FinetuneResult:
    """Load `options.model`, fine-tune it on the task's data and save it (with its tokenizer) to output_dir."""
    if options.task not in TASKS:
        raise FinetuneError(f"task must be one of {sorted(TASKS)}, got {options.task!r}")
    tokenizer = AutoTokenizer.from_pretrained(options.model)
    task = TASKS[options.task](options, tokenizer)
    train_records = task.read(options.train)
    eval_records = task.read(options.eval) if options.eval else []
    config = AutoConfig.from_pretrained(options.model)
    overrides = task.config_overrides(train_records, config)
    if tokenizer.pad_token_id is None:  # GPT-2 style tokenizers: pad with EOS, as transformers' examples do
        tokenizer.pad_token = tokenizer.eos_token
        overrides["pad_token_id"] = tokenizer.pad_token_id
    torch.manual_seed(options.training.seed)  # the new head's initial weights
    model = task.auto_class.from_pretrained(options.model, **overrides)
    task.family = model.family
    model.train()
    train_features, eval_features = task.features(train_records), task.features(eval_records)
    args = training_arguments(options, len(train_features))

    def export(trained: nn.Module, folder: Path) -> None:
        trained.save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))

    args, train_data, eval_data, collator, eval_collator = batching(options, args, train_features, eval_features,
                                                                    tokenizer.pad_token_id)
    trainer = FinetuneTrainer(model, args, train_data, collator, eval_data=eval_data or None,
                              eval_collator=eval_collator, export=export,
                              metrics=lambda trained: task.evaluate(trained, eval_records))
    result = trainer.train()
    final = result.history[-1] if result.history and "eval_loss" in result.history[-1] else {}
    metrics = {k: v for k, v in final.items() if k != "step"}
    if metrics and trainer.dist.is_main:
        (Path(args.output_dir) / "eval_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return FinetuneResult(result, metrics, model, tokenizer)


# ---- the command line ---------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("task and data")
    what.add_argument("--task", required=True, choices=sorted(TASKS))
    what.add_argument("--model", required=True, help="pre-trained model folder or hub id (with its tokenizer)")
    what.add_argument("--train", required=True, help="training file (.csv, .tsv, .jsonl, SQuAD .json)")
    what.add_argument("--eval", help="held-out file in the same format (metrics, held-out loss)")
    what.add_argument("--labels", help="label names in id order, comma-separated or a file with one per line")
    what.add_argument("--max-length", type=int, default=128, help="tokens per input (QA: per window)")
    what.add_argument("--doc-stride", type=int, default=64, help="QA: tokens shared by neighbouring windows")
    what.add_argument("--source-prefix", default="", help='seq2seq: put before every source (T5: "summarize: ")')
    what.add_argument("--max-target-length", type=int, default=64, help="seq2seq: target / generated tokens")
    what.add_argument("--num-beams", type=int, default=1, help="seq2seq: beam width at evaluation")
    loop = parser.add_argument_group("training")
    loop.add_argument("--out", default="finetuned", help="output folder (a Hugging Face checkpoint at the end)")
    length = loop.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=3.0, help="passes over the training data (default 3)")
    length.add_argument("--steps", type=int, help="optimizer steps (instead of --epochs)")
    loop.add_argument("--eval-batch-size", type=int, default=32)
    loop.add_argument("--no-group-by-length", action="store_true",
                      help="draw every batch at random (default: batches of similar lengths, less padding)")
    loop.add_argument("--lr", type=float, default=5e-5)
    loop.add_argument("--warmup", type=float, default=0.1,
                      help="warmup: a fraction of the steps if below 1, else a number of steps (default 0.1)")
    loop.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear")
    add_trainer_arguments(loop, log_every=10)


def _labels(value: str | None) -> list[str] | None:
    if not value:
        return None
    path = Path(value)
    names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else value.split(",")
    return [name.strip() for name in names if name.strip()]


def options_from_args(args: argparse.Namespace) -> FinetuneOptions:
    """The parsed flags as `FinetuneOptions` (warmup as a fraction is resolved once the steps are known)."""
    training = trainer_arguments(args, max_steps=args.steps or 1, betas=(0.9, 0.999))
    return FinetuneOptions(
        task=args.task, model=args.model, train=args.train, eval=args.eval,
        epochs=None if args.steps else args.epochs, warmup=args.warmup, max_length=args.max_length,
        labels=_labels(args.labels), doc_stride=args.doc_stride, source_prefix=args.source_prefix,
        max_target_length=args.max_target_length, num_beams=args.num_beams, eval_batch_size=args.eval_batch_size,
        group_by_length=not args.no_group_by_length, training=training)


def run_command(args: argparse.Namespace) -> int:
    result = finetune(options_from_args(args))
    run = result.training
    print(f"done: {run.step} steps in {run.seconds:.1f}s, last loss {run.loss:.4f}; model in {args.out}")
    for name, value in result.metrics.items():
        print(f"  {name}: {value:.4f}")
    return 0


__all__ = ["FinetuneOptions", "FinetuneResult", "FinetuneError", "finetune", "TASKS", "add_arguments",
           "options_from_args", "run_command"]
