"""FinetuneOptions (what `triformers finetune` does) and FinetuneResult (what it returns)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..tokenization import Tokenizer
from ..training import TrainingArguments, TrainResult


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
