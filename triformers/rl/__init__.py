"""Preference tuning with trl's API: value-head models, PPO (trl 0.11's `PPOTrainer.step` loop) and DPO.

`from triformers.rl import PPOConfig, PPOTrainer, AutoModelForSeq2SeqLMWithValueHead, create_reference_model` where
code had `from trl import ...`; `from triformers.rl.core import LengthSampler` for `trl.core`.
"""

from .core import AdaptiveKLController, FixedKLController, LengthSampler
from .dpo import DPOConfig, DPOTrainer
from .ppo_config import PPOConfig
from .ppo_trainer import PPOTrainer
from .value_head import (AutoModelForCausalLMWithValueHead, AutoModelForSeq2SeqLMWithValueHead, PreTrainedModelWrapper,
                         ValueHead, create_reference_model)

__all__ = ["PPOConfig", "PPOTrainer", "DPOConfig", "DPOTrainer", "AutoModelForCausalLMWithValueHead",
           "AutoModelForSeq2SeqLMWithValueHead", "PreTrainedModelWrapper", "ValueHead", "create_reference_model",
           "LengthSampler", "AdaptiveKLController", "FixedKLController"]
