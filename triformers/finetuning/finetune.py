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

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..auto import AutoConfig
from ..tokenization import AutoTokenizer
from ..training import Trainer, TrainingArguments, init_distributed
from .data import FinetuneError, PaddingCollator
from .options import FinetuneOptions, FinetuneResult
from .tasks import TASKS


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
