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
    lora: str | None = option(None, "train a LoRA adapter instead of every weight: 'r=16,alpha=32,targets=q,v' "
                              "(keys r, alpha, dropout, targets, bias, modules_to_save; targets are transformers' "
                              "module names for the checkpoint, or all-linear; none given: the dialect's default). "
                              "output_dir then holds the adapter in peft's layout (PeftModel.from_pretrained); "
                              "LoRA usually wants a larger learning rate (1e-3)")
    merge_lora: bool = option(False, "with --lora: also write the merged model (loads with the Auto classes) to "
                              "<output_dir>/merged")
    training: TrainingArguments = option(help="training", factory=finetuning_arguments)

    def __post_init__(self) -> None:
        check_fields(self, FinetuneError)
        if self.merge_lora and not self.lora:
            raise FinetuneError("FinetuneOptions: merge_lora needs lora (there is no adapter to merge)")
        if self.lora:
            lora_config(self.lora, self.task)  # a bad spec fails here, before any model is loaded


LORA_KEYS = {"r": "r", "alpha": "lora_alpha", "lora_alpha": "lora_alpha", "dropout": "lora_dropout",
             "lora_dropout": "lora_dropout", "targets": "target_modules", "target_modules": "target_modules",
             "bias": "bias", "modules_to_save": "modules_to_save"}
LORA_LISTS = ("target_modules", "modules_to_save")  # comma-separated values after the key: `targets=q,v`
LORA_TASKS = {"text-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS",
              "question-answering": "QUESTION_ANS", "seq2seq": "SEQ_2_SEQ_LM"}


def lora_config(spec: str, task: str | None = None):
    """The LoraConfig of a `--lora` value such as 'r=16,alpha=32,targets=q,v' (a piece without '=' continues the
    list before it); the task type follows the fine-tuning task, so that a new head trains with the adapter."""
    from ..peft import LoraConfig

    fields: dict[str, list[str]] = {}
    key = None
    for piece in (p.strip() for p in spec.split(",")):
        if "=" in piece:
            name, _, piece = piece.partition("=")
            key = LORA_KEYS.get(name.strip())
            if key is None:
                raise FinetuneError(f"--lora: unknown key {name.strip()!r} in {spec!r} (keys: {', '.join(LORA_KEYS)})")
            if key in fields:
                raise FinetuneError(f"--lora: {name.strip()!r} given twice in {spec!r}")
            fields[key] = []
        elif key not in LORA_LISTS:
            raise FinetuneError(f"--lora: {piece!r} in {spec!r} is not key=value (only targets and modules_to_save "
                                "take several comma-separated values)")
        if piece:
            fields[key].append(piece.strip())
    values: dict = {}
    try:
        for key, items in fields.items():
            if key in LORA_LISTS:
                values[key] = "all-linear" if items == ["all-linear"] else items
            elif len(items) != 1:
                raise ValueError(f"{key} takes one value")
            elif key == "r":
                values[key] = int(items[0])
            elif key == "lora_alpha":
                values[key] = int(items[0]) if items[0].isdigit() else float(items[0])
            elif key == "lora_dropout":
                values[key] = float(items[0])
            else:
                values[key] = items[0]
        return LoraConfig(task_type=LORA_TASKS.get(task), **values)
    except (ValueError, TypeError) as err:
        raise FinetuneError(f"--lora {spec!r}: {err}") from None


@dataclass
class FinetuneResult:
    training: TrainResult
    metrics: dict[str, float]  # the last held-out evaluation (empty without an eval file)
    model: nn.Module  # the fine-tuned model, in training mode (what output_dir holds)
    tokenizer: Tokenizer
