"""Fine-tuning a pre-trained model on a task: options, data files, the four tasks, and `finetune`."""

from .data import FinetuneError, PaddingCollator
from .finetune import finetune
from .options import FinetuneOptions, FinetuneResult, finetuning_arguments
from .tasks import TASKS

__all__ = ["FinetuneOptions", "FinetuneResult", "finetuning_arguments", "FinetuneError", "PaddingCollator", "finetune",
           "TASKS"]
