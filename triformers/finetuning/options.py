"""FinetuneOptions (what `triformers finetune` does; its flags are generated from it) and FinetuneResult."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..tokenization import Tokenizer
from ..training import TrainingArguments, TrainResult, check_fields, option
from .data import FinetuneError


def finetuning_arguments() -> TrainingArguments:
    """`triformers finetune`'s training defaults: transformers' TrainingArguments (learning rate 5e-5, linear
    decay, 3 epochs) with a 10% warmup (its first step not at lr 0), weight decay 0.01 (not on embeddings),
    evaluation every epoch, length-grouped batches."""
    return TrainingArguments(
        output_dir="finetuned", learning_rate=5e-5, lr_scheduler_type="linear", num_train_epochs=3.0,
        warmup_steps=0.1, weight_decay=0.01, per_device_eval_batch_size=32, logging_steps=10,
        eval_strategy="epoch", train_sampling_strategy="group_by_length", save_total_limit=2,
        warmup_from_first_step=True, embedding_weight_decay=False)


def _task_names() -> list[str]:
    from .tasks import TASKS  # tasks.py imports this module

    return sorted(TASKS)


@dataclass
class FinetuneOptions:
    """What `triformers finetune` does; `triformers finetune --task X --model M --train T` is exactly
    `FinetuneOptions(task=X, model=M, train=T)`."""

    task: str = option(help="what the model learns (see `triformers.finetuning.finetune`)", choices=_task_names)
    model: str = option(help="pre-trained model folder or hub id (with its tokenizer)")
    train: str = option(help="training file (.csv, .tsv, .jsonl, SQuAD .json)")
    eval: str | None = option(None, "held-out file in the same format: held-out loss and the task's metrics, per "
                              "training.eval_strategy (None: nothing is evaluated)")
    labels: str | list[str] | None = option(None, "label names in id order: a list, comma-separated names, or a "
                                            "file with one per line (needed for integer NER tags)")
    max_length: int = option(128, "tokens per input (QA: per window)", minimum=1)
    doc_stride: int = option(64, "QA: tokens shared by neighbouring windows of a long context", minimum=0)
    source_prefix: str = option("", 'seq2seq: put before every source (T5: "summarize: ")')
    max_target_length: int = option(64, "seq2seq: target tokens, and new tokens generated at evaluation",
                                    minimum=1)
    num_beams: int = option(1, "seq2seq: beam width at evaluation", minimum=1)
    training: TrainingArguments = option(help="training", factory=finetuning_arguments)

    def __post_init__(self) -> None:
        check_fields(self, FinetuneError)


@dataclass
class FinetuneResult:
    training: TrainResult
    metrics: dict[str, float]  # the last held-out evaluation (empty without an eval file)
    model: nn.Module  # the fine-tuned model, in training mode (what output_dir holds)
    tokenizer: Tokenizer
