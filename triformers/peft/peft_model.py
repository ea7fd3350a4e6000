"""PeftModel (and its task classes), get_peft_model: peft 0.21's wrapper API over a triformers model.

    peft_model = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, target_modules=["q", "v"],
                                                  task_type=TaskType.SEQ_2_SEQ_LM))
    peft_model.print_trainable_parameters()   # peft's counts and format
    Trainer(model=peft_model, ...).train()    # trains, checkpoints and exports the adapter only
    peft_model.save_pretrained(folder)        # adapter_config.json + adapter_model.safetensors, peft's keys
    PeftModel.from_pretrained(base, folder, is_trainable=False)   # a peft-saved adapter loads too
    peft_model.merge_and_unload()             # the base model with B A * scale in its (fused) weights

As peft's wrapper: `base_model` is the LoraModel, `get_base_model()` the triformers model, `peft_config` a dict of
named configs, `generate` / `config` / any other attribute reach the base model. Several adapters: `add_adapter`,
`load_adapter`, `set_adapter` (one active), `delete_adapter`; `disable_adapter()` runs the base model within it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..io import hub
from ..layers.int8 import Int8Linear
from .config import LoraConfig, PeftConfig, TaskType
from .state import adapter_state_dict, load_adapter_state_dict, read_adapter, save_adapter, slots
from .tuner import LoraModel

# PeftModel.from_pretrained / load_adapter keywords accepted with peft's meaning (none, for LoRA on one device)
# `lora_config` too: peft 0.21 lets it fall into **kwargs, which nothing reads - the folder's adapter_config.json
# (or `config=`) is the config - so the course's `PeftModel.from_pretrained(..., lora_config=...)` ignores it there.
PEFT_NO_OPS = ("low_cpu_mem_usage", "ephemeral_gpu_offload", "torch_dtype", "dtype", "key_mapping", "use_safetensors",
               "cache_dir", "token", "local_files_only", "torch_device", "lora_config")


class PeftModel(nn.Module):
    """A triformers model with LoRA adapters, as peft's PeftModel (see the module docstring)."""

    def __init__(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default",
                 autocast_adapter_dtype: bool = True, low_cpu_mem_usage: bool = False):
        super().__init__()
        if not isinstance(peft_config, LoraConfig):
            raise ConfigError(f"triformers implements LoRA adapters only, got {type(peft_config).__name__}")
        if isinstance(model, PeftModel):
            raise ConfigError("the model already has adapters: add another with add_adapter / load_adapter")
        if peft_config.base_model_name_or_path is None:
            peft_config.base_model_name_or_path = getattr(model, "name_or_path", None)
        self.peft_type = "LORA"
        self.base_model = LoraModel(model, {adapter_name: peft_config}, adapter_name, autocast_adapter_dtype)
        self._adapters_disabled = False

    # ---- peft's attributes -----------------------------------------------------------------------------------
    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        return self.base_model.peft_config

    @property
    def active_adapter(self) -> str:
        return self.base_model.active_adapter

    @property
    def active_adapters(self) -> list[str]:
        return [self.active_adapter] if self.active_adapter is not None else []

    @property
    def active_peft_config(self) -> LoraConfig:
        return self.peft_config[self.active_adapter]

    @property
    def modules_to_save(self) -> set[str] | None:
        names = {m for c in self.peft_config.values() for m in (c.modules_to_save or [])}
        return names or None

    def get_base_model(self) -> nn.Module:
        return self.base_model.model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def forward(self, *args: Any, **kwargs: Any):
        return self.get_base_model()(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.get_base_model().generate(*args, **kwargs)

    # ---- counting ---------------------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameters, as peft counts them: every parameter of the wrapped model (an int8 weight
        counted as the parameters it stores, as peft counts an 8-bit base); a trained slice of a fused bias counts
        as trainable, its base bias once in all."""
        trainable = total = 0
        for name, param in self.named_parameters():
            shadow = ".lora_bias." in name  # the base bias already counts it in `all`
            total += 0 if shadow else param.numel()
            trainable += param.numel() if param.requires_grad else 0
        total += sum(m.weight_int8.numel() for m in self.modules() if isinstance(m, Int8Linear))
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        share = 100 * trainable / total
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}")

    # ---- adapters ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Within the block the base model runs (LoRA off, modules_to_save as they were)."""
        was = self._adapters_disabled
        try:
            self.base_model.disable_adapter_layers()
            self._adapters_disabled = True
            yield
        finally:
            if not was:
                self.base_model.enable_adapter_layers()
            self._adapters_disabled = was

    def add_adapter(self, adapter_name: str, peft_config: PeftConfig, low_cpu_mem_usage: bool = False) -> None:
        """A new adapter beside the others (not made active: see set_adapter)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"an adapter named {adapter_name!r} already exists")
        if not isinstance(peft_config, LoraConfig):
            raise ConfigError(f"triformers implements LoRA adapters only, got {type(peft_config).__name__}")
        _complete_for_task(self, peft_config)
        self.peft_config[adapter_name] = peft_config
        try:
            self.base_model.inject_adapter(adapter_name)
        except Exception:
            self.base_model.delete_adapter(adapter_name)
            raise

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        if adapter_name not in self.peft_config:
            raise ValueError(f"Adapter {adapter_name} not found.")
        if inference_mode:
            self.peft_config[adapter_name].inference_mode = True
        self.base_model.set_adapter(adapter_name)

    def delete_adapter(self, adapter_name: str) -> None:
        self.base_model.delete_adapter(adapter_name)

    def load_adapter(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool = False,
                     autocast_adapter_dtype: bool = True, revision: str | None = None, subfolder: str | None = None,
                     **kwargs: Any) -> None:
        """Read an adapter folder (peft's files, or triformers') as the adapter `adapter_name` (not made active)."""
        _check_keywords(kwargs, "load_adapter")
        folder = hub.resolve(model_id, revision=revision) / (subfolder or "")
        config = LoraConfig.from_pretrained(folder)
        config.inference_mode = not is_trainable
        if adapter_name not in self.peft_config:
            self.add_adapter(adapter_name, config)
        tensors, where = read_adapter(folder)
        load_adapter_state_dict(self.base_model, adapter_name, tensors, where)
        self.base_model.set_adapter(self.active_adapter)  # trainability as the active adapter's config says

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: str | os.PathLike, adapter_name: str = "default",
                        is_trainable: bool = False, config: LoraConfig | None = None,
                        autocast_adapter_dtype: bool = True, revision: str | None = None,
                        subfolder: str | None = None, **kwargs: Any) -> PeftModel:
        """The base `model` with the adapter in `model_id` (a folder or a hub id); frozen unless is_trainable.
        As in peft, `torch_dtype` is accepted and changes nothing: the adapter is float32 over a half-precision
        base (autocast_adapter_dtype), else in the base's dtype."""
        device = _one_device(kwargs.pop("device_map", None))
        _check_keywords(kwargs, "PeftModel.from_pretrained")
        folder = hub.resolve(model_id, revision=revision) / (subfolder or "")
        config = config if config is not None else LoraConfig.from_pretrained(folder)
        config.inference_mode = not is_trainable
        task_class = TASK_CLASSES.get(config.task_type, PeftModel) if cls is PeftModel else cls
        peft_model = task_class(model, config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        tensors, where = read_adapter(folder)
        load_adapter_state_dict(peft_model.base_model, adapter_name, tensors, where)
        return peft_model if device is None else peft_model.to(device)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        selected_adapters: list[str] | None = None, is_main_process: bool = True,
                        **kwargs: Any) -> None:
        """Each adapter's folder (the "default" one in save_directory, another in save_directory/<name>, as
        peft): adapter_config.json + adapter_model.safetensors with peft's key names."""
        if not safe_serialization:
            raise ConfigError("save_pretrained(safe_serialization=False): triformers writes safetensors only")
        unknown = sorted(set(kwargs) - {"save_embedding_layers", "path_initial_model_for_weight_conversion"})
        if unknown:
            raise TypeError(f"PeftModel.save_pretrained got unexpected keyword arguments {unknown}")
        if not is_main_process:
            return
        for name in selected_adapters or list(self.peft_config):
            if name not in self.peft_config:
                raise ValueError(f"no adapter named {name!r}; adapters: {list(self.peft_config)}")
            folder = Path(save_directory) if name == "default" else Path(save_directory) / name
            save_adapter(self.base_model, name, folder)

    # ---- back to the base model ---------------------------------------------------------------------------------
    def merge_and_unload(self, progressbar: bool = False, safe_merge: bool = False,
                         adapter_names: list[str] | None = None) -> nn.Module:
        """The base model with the active adapter (or `adapter_names`) merged into its weights (an int8 base is
        requantized), the adapter layers gone."""
        return self.base_model.unload_and_optionally_merge(True, safe_merge, adapter_names)

    def unload(self) -> nn.Module:
        """The base model without the adapter layers, unmerged."""
        return self.base_model.unload_and_optionally_merge(False)

    # ---- what the Trainer checkpoints ---------------------------------------------------------------------------
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Every adapter's tensors (peft's keys, by adapter): what a Trainer checkpoint holds of this model."""
        return {f"{name}/{key}": value for name in self.peft_config
                for key, value in adapter_state_dict(self.base_model, name).items()}

    def load_checkpoint_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.peft_config:
            prefix = f"{name}/"
            load_adapter_state_dict(self.base_model, name, {k[len(prefix):]: v for k, v in state.items()
                                                            if k.startswith(prefix)}, "checkpoint")
        known = {f"{n}/{k}" for n in self.peft_config for s in slots(self.base_model, n) for k in s.keys}
        extra = sorted(set(state) - known)
        if extra:
            raise ConfigError(f"checkpoint holds tensors of adapters this model does not have: {extra[:4]}")


def _one_device(device_map: Any) -> torch.device | None:
    """peft's `device_map` (transformers': "auto", a device, or {module name: device}) as the one device triformers
    keeps a model on: None ("auto" or not given) leaves the model where it is; a map over several is refused."""
    if device_map is None or device_map == "auto":
        return None
    devices = set(device_map.values()) if isinstance(device_map, dict) else {device_map}
    try:
        (device,) = {torch.device(f"cuda:{d}" if isinstance(d, int) else d) for d in devices}
    except (ValueError, RuntimeError, TypeError):
        raise ConfigError(f"device_map={device_map!r}: triformers keeps a model on one device; pass 'auto' or one "
                          f"device (e.g. 'cpu', 0)") from None
    return device


def _check_keywords(kwargs: dict[str, Any], where: str) -> None:
    unknown = sorted(set(kwargs) - set(PEFT_NO_OPS))
    if unknown:
        raise TypeError(f"{where} got unexpected keyword arguments {unknown}")


def _complete_for_task(model: PeftModel, config: LoraConfig) -> None:
    if config.task_type is None and type(model) is not PeftModel:
        config.task_type = next((t for t, c in TASK_CLASSES.items() if c is type(model)), None)


class PeftModelForSequenceClassification(PeftModel):
    """peft's class for SEQ_CLS: the classifier head ("classifier" / "score") is trained and saved whole."""


class PeftModelForTokenClassification(PeftModel):
    """peft's class for TOKEN_CLS: the classifier head is trained and saved whole."""


class PeftModelForQuestionAnswering(PeftModel):
    """peft's class for QUESTION_ANS: the span head ("qa_outputs") is trained and saved whole."""


class PeftModelForCausalLM(PeftModel):
    pass


class PeftModelForSeq2SeqLM(PeftModel):
    pass


class PeftModelForFeatureExtraction(PeftModel):
    pass


TASK_CLASSES = {TaskType.SEQ_CLS: PeftModelForSequenceClassification, TaskType.SEQ_2_SEQ_LM: PeftModelForSeq2SeqLM,
                TaskType.CAUSAL_LM: PeftModelForCausalLM, TaskType.TOKEN_CLS: PeftModelForTokenClassification,
                TaskType.QUESTION_ANS: PeftModelForQuestionAnswering,
                TaskType.FEATURE_EXTRACTION: PeftModelForFeatureExtraction}


def get_peft_model(model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", mixed: bool = False,
                   autocast_adapter_dtype: bool = True, revision: str | None = None,
                   low_cpu_mem_usage: bool = False) -> PeftModel:
    """The model with a new LoRA adapter: the PeftModel class of the config's task_type (PeftModel without one)."""
    if mixed:
        raise ConfigError("get_peft_model(mixed=True): mixed adapter types are not implemented by triformers")
    if revision is not None:
        peft_config.revision = revision
    task_class = TASK_CLASSES.get(getattr(peft_config, "task_type", None), PeftModel)
    return task_class(model, peft_config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
