"""Language models with a value head, as trl 0.11's `AutoModelForCausalLMWithValueHead` /
`AutoModelForSeq2SeqLMWithValueHead`, and `create_reference_model`.

    ppo_model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(peft_model, is_trainable=True)
    logits, loss, values = ppo_model(input_ids=..., attention_mask=..., decoder_input_ids=...)   # values: (B, T)
    ref_model = create_reference_model(ppo_model)                                               # frozen copy, eval()

The value head is one linear layer (hidden -> 1, dropout 0.1 before it) on the last hidden state of the model's
(decoder) stack, computed in float32. The wrapped model may be a triformers LM or a LoRA `PeftModel` over one;
`generate` goes straight to it. `save_pretrained` writes the wrapped model's folder (a full checkpoint, or the
adapter) plus `value_head.safetensors`, which `from_pretrained` reads back when it is there.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_HEAD_ARGS = ("summary_dropout_prob", "v_head_initializer_range", "v_head_init_strategy")


class ValueHead(nn.Module):
    """A scalar per token: dropout, then Linear(hidden, 1), in float32 whatever the body's dtype."""

    def __init__(self, hidden_size: int, summary_dropout_prob: float | None = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(summary_dropout_prob) if summary_dropout_prob else nn.Identity()
        self.summary = nn.Linear(hidden_size, 1)
        self.flatten = nn.Flatten()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.summary(self.dropout(hidden_states).to(self.summary.weight.dtype))  # (B, T, 1)


class PreTrainedModelWrapper(nn.Module):
    """A language model (`pretrained_model`) and its value head (`v_head`)."""

    family = "decoder"
    auto_class_name = "AutoModelForCausalLM"

    def __init__(self, pretrained_model: nn.Module, summary_dropout_prob: float | None = 0.1,
                 v_head_initializer_range: float = 0.2, v_head_init_strategy: str | None = None):
        super().__init__()
        from ..peft import PeftModel

        if getattr(pretrained_model, "family", None) != self.family:
            raise ConfigError(f"{type(self).__name__} wraps a {self.family} model, got "
                              f"{type(pretrained_model).__name__} ({getattr(pretrained_model, 'family', '?')})")
        self.pretrained_model = pretrained_model
        self.config = pretrained_model.config
        self.is_peft_model = isinstance(pretrained_model, PeftModel)
        self.is_encoder_decoder = self.family == "encoder-decoder"
        self.v_head = ValueHead(pretrained_model.config.hidden_size, summary_dropout_prob)
        if v_head_init_strategy == "normal":
            nn.init.normal_(self.v_head.summary.weight, std=v_head_initializer_range)
            nn.init.zeros_(self.v_head.summary.bias)
        elif v_head_init_strategy is not None:
            raise ConfigError(f"v_head_init_strategy must be None or 'normal', got {v_head_init_strategy!r}")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | nn.Module, *model_args: Any,
                        **kwargs: Any) -> PreTrainedModelWrapper:
        """Over a model in memory (a triformers LM or a PeftModel), or loaded by name with the Auto class
        (`kwargs` as `from_pretrained` takes them); `peft_config=` wraps it in a new LoRA adapter first."""
        head_args = {k: kwargs.pop(k) for k in VALUE_HEAD_ARGS if k in kwargs}
        peft_config = kwargs.pop("peft_config", None)
        kwargs.pop("is_trainable", None)  # trl's flag for loading an adapter; a model in memory stays as it is
        if isinstance(pretrained_model_name_or_path, nn.Module):
            model, folder = pretrained_model_name_or_path, None
        else:
            import triformers

            folder = Path(str(pretrained_model_name_or_path))
            model = getattr(triformers, cls.auto_class_name).from_pretrained(pretrained_model_name_or_path,
                                                                             *model_args, **kwargs)
        if peft_config is not None:
            from ..peft import get_peft_model

            model = get_peft_model(model, peft_config)
        wrapper = cls(model, **head_args)
        if folder is not None and (folder / VALUE_HEAD_FILE).is_file():
            from safetensors.torch import load_file

            wrapper.v_head.load_state_dict({k.removeprefix("v_head."): v
                                            for k, v in load_file(folder / VALUE_HEAD_FILE).items()})
        return wrapper

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        from safetensors.torch import save_file

        self.pretrained_model.save_pretrained(save_directory, **kwargs)
        state = {f"v_head.{k}": v.detach().contiguous() for k, v in self.v_head.state_dict().items()}
        save_file(state, str(Path(save_directory) / VALUE_HEAD_FILE))

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.pretrained_model.generate(*args, **kwargs)

    def forward(self, input_ids: torch.Tensor | None = None, past_key_values: Any = None,
                attention_mask: torch.Tensor | None = None, return_past_key_values: bool = False,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(lm_logits (B, T, V) float32, loss or None, values (B, T)), as trl's wrappers return them."""
        if past_key_values is not None or return_past_key_values:
            raise ConfigError(f"{type(self).__name__}: past_key_values are not supported in the PPO forward")
        out = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        value = self.v_head(out.last_hidden_state).squeeze(-1)  # (B, T)
        return out.logits.float(), out.loss, value

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)


class AutoModelForCausalLMWithValueHead(PreTrainedModelWrapper):
    family = "decoder"
    auto_class_name = "AutoModelForCausalLM"


class AutoModelForSeq2SeqLMWithValueHead(PreTrainedModelWrapper):
    family = "encoder-decoder"
    auto_class_name = "AutoModelForSeq2SeqLM"


def create_reference_model(model: nn.Module, num_shared_layers: int | None = None,
                           pattern: str | None = None) -> nn.Module:
    """A frozen copy of `model` in eval mode (trl's; sharing the first layers is not supported: a copy of the
    whole model, or for a LoRA policy no copy at all - pass ref_model=None and PPOTrainer disables the adapter)."""
    if num_shared_layers is not None or pattern is not None:
        raise ConfigError("create_reference_model: num_shared_layers / pattern are not supported; the reference is "
                          "a full frozen copy")
    reference = copy.deepcopy(model)
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference.eval()
