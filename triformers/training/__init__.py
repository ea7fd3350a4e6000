"""Training: arguments (transformers' names and defaults), the step plan, the loop (Trainer, Seq2SeqTrainer),
callbacks and state, data collators, optimizer and schedules, distributed training, checkpoints, RNG state and
the metrics log."""

from ..errors import TrainingError
from .arguments import SCHEDULERS, STRATEGIES, TrainingArguments
from .callbacks import (DefaultFlowCallback, EarlyStoppingCallback, PrinterCallback, ProgressCallback,
                        TrainerCallback, TrainerControl, TrainerState)
from .checkpoints import checkpoint_paths, latest_checkpoint, write_checkpoint
from .collators import (DataCollatorForLanguageModeling, DataCollatorForSeq2Seq, DataCollatorForTokenClassification,
                        DataCollatorWithPadding, DefaultDataCollator, default_data_collator)
from .distributed import Distributed, init_distributed, shard_model
from .evaluation import EvalPrediction, PredictionOutput, TrainOutput, TrainResult
from .fields import check_fields, option
from .optim import build_optimizer, learning_rate
from .plan import Plan, make_plan
from .rng import set_seed
from .seq2seq import Seq2SeqTrainer, Seq2SeqTrainingArguments
from .trainer import Trainer

__all__ = ["TrainingArguments", "Trainer", "TrainResult", "TrainOutput", "PredictionOutput", "EvalPrediction",
           "Seq2SeqTrainer", "Seq2SeqTrainingArguments", "TrainerCallback", "TrainerState", "TrainerControl",
           "DefaultFlowCallback", "ProgressCallback", "PrinterCallback", "EarlyStoppingCallback",
           "DataCollatorWithPadding", "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq",
           "DataCollatorForTokenClassification", "DefaultDataCollator", "default_data_collator", "set_seed",
           "TrainingError", "learning_rate", "build_optimizer", "init_distributed", "Distributed", "checkpoint_paths",
           "latest_checkpoint", "write_checkpoint", "shard_model", "SCHEDULERS", "STRATEGIES", "Plan", "make_plan",
           "option", "check_fields"]
