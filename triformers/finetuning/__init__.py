"""Fine-tuning a pre-trained model on a task: options, data files, the four tasks, and `finetune`."""

from .data import FinetuneError, PaddingCollator
from .finetune import finetune
from .options import FinetuneOptions, FinetuneResult
from .tasks import TASKS

__all__ = ["FinetuneOptions", "FinetuneResult", "FinetuneError", "PaddingCollator", "finetune", "TASKS"]
