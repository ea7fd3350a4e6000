"""TrainingArguments: the training loop's settings, with transformers 5.24's names and defaults.

The fields transformers has keep its name, meaning and default (`learning_rate=5e-5`, linear decay,
`num_train_epochs=3` unless `max_steps` > 0, `warmup_steps` as steps or, below 1, a fraction of the run,
`eval_strategy="no"`, a checkpoint every 500 steps, `seed=42`, ...). triformers' own extras are marked
"(triformers)" in their help. A value is checked when the arguments are made (and again by the Trainer,
as fields may change after that); an error names the field. What transformers accepts but this trainer
cannot do (other schedulers, reporting integrations, fp16 loss scaling, pushing to the Hub) is refused with a
clear error rather than ignored; a keyword transformers 5.24 no longer has (`warmup_ratio`, `group_by_length`)
is the TypeError it is there. The commands set their own defaults on top of these (`PretrainOptions.training`,
`FinetuneOptions.training`), among them two triformers choices transformers does not make: warmup that does
not spend the first step at lr 0, and no weight decay on embeddings.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError, TrainingError
from ..memory import parse_device
from .fields import check_fields, option
from .output import check_output_dir

Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
Strategy = Literal["no", "steps", "epoch"]
SaveStrategy = Literal["no", "steps", "epoch", "best"]
Sampling = Literal["random", "sequential", "group_by_length"]
SCHEDULERS = typing.get_args(Scheduler)
STRATEGIES = typing.get_args(Strategy)


@dataclass
class TrainingArguments:
    """Everything the Trainer needs; `triformers pretrain` / `finetune` flags are generated from these fields."""

    # ---- output and restarts
    output_dir: str | None = option(None, "checkpoints, metrics and the final model (None: trainer_output)",
                                    flags=("--out",))
    overwrite_output_dir: bool = option(False, "a fresh run may delete the checkpoints an earlier run left in "
                                        "output_dir (triformers refuses to mix two runs otherwise)",
                                        flags=("--overwrite",))
    resume_from_checkpoint: str | bool | None = option(
        None, "continue a run: True or 'latest' for the newest checkpoint in output_dir, or a checkpoint folder",
        flags=("--resume",), nargs="?", const=True)
    # ---- how long, how big
    per_device_train_batch_size: int = option(8, "examples per micro-batch per process", flags=("--batch-size",))
    per_device_eval_batch_size: int = option(8, "examples per held-out batch per process",
                                             flags=("--eval-batch-size",))
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step; global batch = batch size x "
                                              "accumulation x processes", flags=("--grad-accum",))
    num_train_epochs: float = option(3.0, "passes over the training data (when max_steps is -1)",
                                     flags=("--epochs",))
    max_steps: int = option(-1, "optimizer steps; -1: as many as num_train_epochs take", flags=("--steps",))
    train_sampling_strategy: Sampling = option(
        "random", "example order of each epoch: random (seeded), sequential, or group_by_length (shuffled, then "
        "sorted by length within mega-batches of 50 global batches: less padding)")
    data_seed: int | None = option(None, "seed of the example order (None: seed)", minimum=0)
    length_column_name: str = option("length", "group_by_length: the column of precomputed lengths, when a "
                                     "datasets.Dataset has it")
    dataloader_drop_last: bool = option(False, "drop each epoch's last incomplete batch")
    dataloader_num_workers: int = option(0, "processes that collate batches (0: in the training process); batches "
                                         "are the same either way")
    dataloader_pin_memory: bool = option(True, "pinned host memory for batches bound for a GPU")
    remove_unused_columns: bool = option(True, "drop the dataset columns the model's forward does not take")
    label_names: list[str] | None = option(None, "the batch keys holding labels (None: the forward's label "
                                           "arguments: labels, or start_positions / end_positions for QA)")
    auto_find_batch_size: bool = option(False, "halve per_device_train_batch_size when the first step runs out of "
                                        "device memory, and retry (as transformers: the global batch shrinks)")
    # ---- optimizer (AdamW) and schedule
    learning_rate: float = option(5e-5, "peak learning rate", flags=("--lr",))
    weight_decay: float = option(0.0, "AdamW weight decay, never on biases, norms and embeddings")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this (0: no clipping)")
    lr_scheduler_type: Scheduler = option(
        "linear", "after warmup: linear or cosine decay, or constant_with_warmup; constant (transformers' "
        "meaning) has no warmup", flags=("--schedule",))
    warmup_steps: float = option(0, "linear warmup: a number of steps, or below 1 a fraction of the run",
                                 flags=("--warmup",))
    min_lr_ratio: float = option(0.0, "linear / cosine decay ends at min_lr_ratio x learning_rate (triformers)")
    warmup_from_first_step: bool = option(
        False, "warmup lr is learning_rate x (step + 1) / warmup_steps, so the first step is not taken at lr 0 "
        "(transformers: step / warmup_steps) (triformers)")
    embedding_weight_decay: bool = option(
        True, "weight decay on embedding tables too, as transformers; False: only on weight matrices (the GPT-2 / "
        "nanoGPT grouping) (triformers)", no_flags=("--no-embedding-weight-decay",))
    # ---- logging, evaluation, checkpoints (steps below 1: a fraction of the run, as in transformers)
    logging_strategy: Strategy = option("steps", "when metrics.jsonl gets a training line")
    logging_steps: float = option(500, "steps between training lines (logging_strategy 'steps')",
                                  flags=("--log-every",))
    logging_first_step: bool = option(False, "log the first step too")
    eval_strategy: Strategy = option("no", "when to compute the held-out loss (and a task's metrics); 'steps' "
                                     "and 'epoch' also evaluate after the last step")
    eval_steps: float | None = option(None, "steps between evaluations (eval_strategy 'steps'; None: "
                                      "logging_steps)", flags=("--eval-every",))
    max_eval_batches: int | None = option(None, "held-out batches per evaluation (None: all of them) (triformers)",
                                          flags=("--eval-batches",))
    eval_on_start: bool = option(False, "evaluate once before the first step")
    prediction_loss_only: bool = option(False, "evaluate() computes the loss alone, never gathering predictions")
    save_strategy: SaveStrategy = option(
        "steps", "when to write a checkpoint (resumable): 'steps' and 'epoch' also save after the last step, 'best' "
        "after each evaluation that improves metric_for_best_model; the final model goes to output_dir in any case")
    save_steps: float = option(500, "steps between checkpoints (save_strategy 'steps')", flags=("--save-every",))
    save_total_limit: int | None = option(None, "checkpoints kept on disk, the newest (and the best one with "
                                          "load_best_model_at_end) (None: all)", flags=("--keep",))
    load_best_model_at_end: bool = option(False, "after training, load the checkpoint with the best "
                                          "metric_for_best_model (eval and save strategies must match)")
    metric_for_best_model: str | None = option(None, "the evaluation metric that picks the best checkpoint, with "
                                               "or without its eval_ prefix (None: loss, with load_best_model_at_end)")
    greater_is_better: bool | None = option(None, "whether a larger metric_for_best_model is better (None: unless "
                                            "its name ends in loss)")
    report_to: str | list[str] | None = option("none", "reporting integrations: only 'none' (metrics.jsonl and "
                                               "the loss curve are always written)")
    disable_tqdm: bool = option(False, "no progress bar", flags=("--no-progress",))
    plot_loss: bool = option(True, "draw output_dir/loss_curve.png (needs matplotlib) (triformers)",
                             no_flags=("--no-plot",))
    # ---- reproducibility, precision, hardware
    seed: int = option(42, "seed of the example order, the masks and the dropout streams")
    bf16: bool = option(False, "bfloat16 autocast where the hardware has it")
    fp16: bool = option(False, "float16 training: refused (it needs loss scaling, which this trainer does not do; "
                        "use bf16)")
    push_to_hub: bool = option(False, "upload to the Hugging Face Hub: refused (triformers never uploads; push "
                               "output_dir with huggingface_hub)")
    device: str | None = option(None, "cpu, cuda, cuda:1 (None: cuda:LOCAL_RANK when available, else cpu) "
                                "(triformers)")
    fsdp: bool = option(False, "under torchrun: shard parameters, gradients and optimizer state (FSDP2) "
                        "instead of replicating the model (DDP)")

    def __post_init__(self) -> None:
        if self.output_dir is None:
            self.output_dir = "trainer_output"  # as transformers
        if (self.load_best_model_at_end or self.save_strategy == "best") and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"  # transformers' defaults for the two
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        self.validate()

    def validate(self) -> None:
        """Every field checked; a TrainingError names the field and the value."""
        check_fields(self, TrainingError)
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            _require(self, name, getattr(self, name) >= 1, "must be at least 1")
        _require(self, "max_steps", self.max_steps == -1 or self.max_steps >= 1,
                 "must be -1 (use num_train_epochs) or a positive number of steps")
        _require(self, "num_train_epochs", math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0,
                 "must be a positive number")
        for name in ("learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm"):
            _require(self, name, math.isfinite(getattr(self, name)) and getattr(self, name) >= 0,
                     "must be a finite number >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            _require(self, name, 0 <= getattr(self, name) < 1, "must be in [0, 1)")
        _require(self, "min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "must be in [0, 1]")
        _check_steps(self, "warmup_steps", zero=True)
        _require(self, "warmup_steps", self.lr_scheduler_type != "constant" or self.warmup_steps == 0,
                 "needs lr_scheduler_type 'constant_with_warmup' ('constant' has no warmup, as in transformers)")
        _check_steps(self, "logging_steps", zero=self.logging_strategy != "steps")
        _check_steps(self, "save_steps", zero=self.save_strategy != "steps")
        if self.eval_steps is not None:
            _check_steps(self, "eval_steps")
        for name in ("max_eval_batches", "save_total_limit"):
            _require(self, name, getattr(self, name) is None or getattr(self, name) >= 1, "must be None or >= 1")
        _require(self, "seed", self.seed >= 0, "must not be negative")
        _require(self, "dataloader_num_workers", self.dataloader_num_workers >= 0, "must not be negative")
        _require(self, "fp16", not self.fp16, "is not supported: float16 needs loss scaling, which this trainer "
                 "does not do; use bf16=True")
        _require(self, "push_to_hub", not self.push_to_hub, "is not supported: triformers never uploads; "
                 "push output_dir with huggingface_hub")
        self._check_best_model()
        _require(self, "report_to", self.report_to in (None, "none", [], ["none"]),
                 "is not supported yet: only 'none' (metrics.jsonl and loss_curve.png are written in any case)")
        _require(self, "output_dir", bool(self.output_dir), "must name a folder")
        check_output_dir(self.output_dir)
        try:
            parse_device(self.device, "TrainingArguments: device")
        except InputError as err:
            raise TrainingError(str(err)) from None

    def _check_best_model(self) -> None:
        """transformers' rule: load_best_model_at_end needs a checkpoint at every evaluation."""
        _require(self, "save_strategy", self.save_strategy != "best" or self.eval_strategy != "no",
                 "needs an eval_strategy: 'best' saves after evaluations that improve metric_for_best_model")
        if not self.load_best_model_at_end or self.save_strategy == "best":
            return
        _require(self, "load_best_model_at_end", self.eval_strategy == self.save_strategy and self.eval_strategy
                 != "no", f"needs eval_strategy and save_strategy to match (they are {self.eval_strategy!r} and "
                 f"{self.save_strategy!r}), or save_strategy='best'")
        eval_steps = self.logging_steps if self.eval_steps is None else self.eval_steps
        _require(self, "load_best_model_at_end", self.eval_strategy != "steps" or self.save_steps % eval_steps == 0,
                 f"needs save_steps ({self.save_steps}) to be a multiple of eval_steps ({eval_steps})")


def _require(args: TrainingArguments, name: str, ok: bool, what: str) -> None:
    if not ok:
        raise TrainingError(f"TrainingArguments: {name}={getattr(args, name)!r} {what}")


def _check_steps(args: TrainingArguments, name: str, zero: bool = False) -> None:
    """A count of steps (an integer >= 1, or 0 where allowed) or a fraction of the run in (0, 1)."""
    value = getattr(args, name)
    ok = math.isfinite(value) and (0 < value < 1 or value >= 1 and value == int(value) or zero and value == 0)
    _require(args, name, ok, "must be a whole number of steps >= 1 or a fraction of the run in (0, 1)"
             + (" (or 0)" if zero else ""))


def resolve_steps(value: float, max_steps: int) -> int:
    """A step count from a field that may be a fraction of the run (rounded up, as transformers)."""
    return math.ceil(max_steps * value) if 0 < value < 1 else int(value)
