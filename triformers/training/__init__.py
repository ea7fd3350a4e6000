"""Training: arguments (transformers' names and defaults), the step plan, the loop (Trainer), optimizer and
schedules, distributed training, checkpoints, RNG state and the metrics log."""

from ..errors import TrainingError
from .arguments import SCHEDULERS, STRATEGIES, TrainingArguments
from .checkpoints import checkpoint_paths, latest_checkpoint, write_checkpoint
from .distributed import Distributed, init_distributed, shard_model
from .fields import check_fields, option
from .optim import build_optimizer, learning_rate
from .plan import Plan, make_plan
from .trainer import Trainer, TrainResult

__all__ = ["TrainingArguments", "Trainer", "TrainResult", "TrainingError", "learning_rate", "build_optimizer",
           "init_distributed", "Distributed", "checkpoint_paths", "latest_checkpoint", "write_checkpoint",
           "shard_model", "SCHEDULERS", "STRATEGIES", "Plan", "make_plan", "option", "check_fields"]
