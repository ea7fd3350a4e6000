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
`--epochs` (training.num_train_epochs) sets the number of optimizer steps from the number of training examples
(QA: windows) unless `--steps` gives it; the defaults (`finetuning_arguments`) are transformers' with a 10%
warmup, evaluation every epoch and batches grouped by length (less padding, as transformers' group_by_length).
Without an eval file nothing is evaluated.

`--lora r=16,alpha=32,targets=q,v` trains a LoRA adapter (`triformers.peft`) over the frozen model instead, plus
a new task head (peft's task types put it in modules_to_save); checkpoints hold the trainable tensors only, and
output_dir holds the adapter (adapter_config.json, adapter_model.safetensors: peft's layout, which
`PeftModel.from_pretrained(base, output_dir)` in triformers or in peft reads) with the tokenizer. `--merge-lora`
also writes the merged model to output_dir/merged, a plain checkpoint for the Auto classes and the pipelines:

    triformers finetune --task seq2seq --model t5-dir --train s.jsonl --lora r=16,alpha=32,targets=q,v --lr 1e-3 \
        --merge-lora --out summ-lora
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..auto import AutoConfig
from ..tokenization import AutoTokenizer
from ..training import Trainer
from .data import FinetuneError, PaddingCollator
from .options import FinetuneOptions, FinetuneResult, lora_config
from .tasks import TASKS


# ---- the run ------------------------------------------------------------------------------------------------
class FinetuneTrainer(Trainer):
    """The Trainer, with the task's metrics on the whole eval file next to every held-out loss it logs."""

    def __init__(self, *args: Any, metrics: Callable[[nn.Module], dict[str, float]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def more_metrics(self) -> dict[str, float]:
        return self.metrics(self.model)  # generation / span search runs once, on the process that logs


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
    if options.lora:
        from ..peft import get_peft_model

        model = get_peft_model(model, lora_config(options.lora, options.task))
    model.train()
    train_features, eval_features = task.features(train_records), task.features(eval_records)
    args = options.training
    if not eval_features:
        args = dataclasses.replace(args, eval_strategy="no")  # no eval file: nothing to evaluate

    def export(trained: nn.Module, folder: Path) -> None:
        trained.save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))

    trainer = FinetuneTrainer(model, args, train_dataset=train_features,
                              data_collator=PaddingCollator(tokenizer.pad_token_id),
                              eval_dataset=eval_features or None, export=export,
                              metrics=lambda trained: task.evaluate(trained, eval_records))
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    result = trainer.result
    final = next((record for record in reversed(result.history) if "eval_loss" in record), {})
    metrics = {k: v for k, v in final.items() if k != "step"}
    if metrics and trainer.dist.is_main:
        (Path(args.output_dir) / "eval_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if options.merge_lora:
        model = model.merge_and_unload()  # the adapter is saved; the merged model is what the result holds
        if trainer.dist.is_main:
            export(model, Path(args.output_dir) / "merged")
    return FinetuneResult(result, metrics, model, tokenizer)
