"""LoRA adapters with peft's API and file format (peft 0.21), on triformers' fused layers.

`from triformers.peft import LoraConfig, TaskType, get_peft_model, PeftModel` where code had `from peft import ...`.
target_modules are transformers' module names (T5 `q`, `v`; GPT-2 `c_attn`; BERT `query`, `value`; ...); an adapter
on a module that triformers fuses with others (q|k|v) is a low-rank update of its rows of the fused weight
(`targets.py`), saved and loaded under peft's key names, so adapters move between peft and triformers both ways.
"""

from .config import LoraConfig, PeftConfig, TaskType
from .layers import LoraLinear, ModulesToSave
from .peft_model import (PeftModel, PeftModelForCausalLM, PeftModelForFeatureExtraction, PeftModelForQuestionAnswering,
                         PeftModelForSeq2SeqLM, PeftModelForSequenceClassification, PeftModelForTokenClassification,
                         get_peft_model)
from .tuner import LoraModel

__all__ = ["LoraConfig", "PeftConfig", "TaskType", "get_peft_model", "PeftModel", "PeftModelForCausalLM",
           "PeftModelForSeq2SeqLM", "PeftModelForSequenceClassification", "PeftModelForTokenClassification",
           "PeftModelForQuestionAnswering", "PeftModelForFeatureExtraction", "LoraModel", "LoraLinear",
           "ModulesToSave"]
