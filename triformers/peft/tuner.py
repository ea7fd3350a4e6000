"""LoraModel: peft's `base_model`, a triformers model with LoRA adapters injected into its layers.

Injecting an adapter (peft's `inject_adapter`): the config's target names are matched, as peft matches them, against
the model's transformers module names (`targets.layout`); each matched module becomes an A/B pair in the
`LoraLinear` that wraps the layer of ours holding its rows; `modules_to_save` are wrapped whole (`ModulesToSave`);
then everything but the active adapter (and the biases its `bias` setting trains) is frozen. One adapter is
active at a time; `disable_adapters` runs the base model; merging adds B A * scale into the rows of the fused
weights and puts the plain layers back (peft's `merge_and_unload`), `unload` puts them back unmerged.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..dialects import get_dialect
from ..errors import ConfigError
from .config import LoraConfig, TaskType
from .layers import LoraLinear, ModulesToSave, Slice
from .targets import Layout, Part, is_target, layout, pattern_value, unwrapped

logger = logging.getLogger("triformers")
HALF = (torch.float16, torch.bfloat16)
HEADS_BY_TASK = {TaskType.SEQ_CLS: ["classifier", "score"], TaskType.TOKEN_CLS: ["classifier", "score"],
                 TaskType.QUESTION_ANS: ["qa_outputs"]}  # what peft's task classes add to modules_to_save


class LoraModel(nn.Module):
    prefix = "lora_"

    def __init__(self, model: nn.Module, peft_config: dict[str, LoraConfig], adapter_name: str,
                 autocast_adapter_dtype: bool = True):
        super().__init__()
        self.model = model
        self.peft_config = peft_config
        self.layout: Layout = layout(model)
        self.active_adapter = adapter_name
        self.autocast_adapter_dtype = autocast_adapter_dtype
        self.inject_adapter(adapter_name)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    # ---- injecting -----------------------------------------------------------------------------------------
    def complete_config(self, config: LoraConfig) -> None:
        """What peft fills in before injecting: default targets for the model type, "all-linear" spelled out, the
        task's head in modules_to_save, fan_in_fan_out as the targeted layers are stored."""
        if config.target_modules is None:
            defaults = get_dialect(self.model.config.model_type).lora_targets
            if not defaults:
                raise ConfigError(f"LoraConfig: no default target_modules for model_type "
                                  f"{self.model.config.model_type!r}; give target_modules")
            config.target_modules = set(defaults)
        if isinstance(config.target_modules, str) and config.target_modules.lower() == "all-linear":
            heads = set(self.layout.output_head)
            if not heads and config.task_type == TaskType.SEQ_CLS:
                heads = {name for name in ("score", "classifier") if name in self.layout.parts}
            config.target_modules = {name for name in self.layout.parts if name not in heads}
        extra = HEADS_BY_TASK.get(config.task_type, [])
        if extra:
            config.modules_to_save = list(config.modules_to_save or []) + [
                m for m in extra if m not in (config.modules_to_save or [])]

    def select(self, config: LoraConfig) -> list[Part]:
        """The transformers linear modules this config targets."""
        chosen = []
        for key in self.layout.modules:
            if not is_target(config, key, config.modules_to_save):
                continue
            part = self.layout.parts.get(key)
            if part is None:
                raise ConfigError(f"LoraConfig: target {key!r} is not a linear layer (triformers puts LoRA on "
                                  "linear layers only, not on embeddings, norms or containers of layers)")
            chosen.append(part)
        if not chosen:
            names = sorted({p.short for p in self.layout.parts.values()})
            raise ConfigError(f"Target modules {config.target_modules} not found in the base model. Please check the "
                              f"target modules and try again (names of this {self.model.config.model_type} model "
                              f"as transformers has them: e.g. {names})")
        return chosen

    def inject_adapter(self, adapter: str) -> None:
        config = self.peft_config[adapter]
        self.complete_config(config)
        parts = self.select(config)
        conv1d = {p.conv1d for p in parts}
        if conv1d == {True} and not config.fan_in_fan_out:
            logger.warning("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out "
                           "to True.")
            config.fan_in_fan_out = True
        elif conv1d == {False} and config.fan_in_fan_out:
            logger.warning("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting "
                           "fan_in_fan_out to False.")
            config.fan_in_fan_out = False
        for part in parts:
            wrapper = self._lora_layer(part.module)
            r = pattern_value(config.rank_pattern, part.name, config.r)
            alpha = pattern_value(config.alpha_pattern, part.name, config.lora_alpha)
            piece = Slice(part, r, config.scaling(r, alpha), float(config.lora_dropout))
            wrapper.add(adapter, piece, config.init_lora_weights, self._adapter_dtype(wrapper))
        self._save_modules(adapter, config)
        if config.bias == "lora_only":
            self._train_lora_biases()
        self.set_adapter(self.active_adapter)

    def _adapter_dtype(self, wrapper: LoraLinear) -> torch.dtype:
        """The base layer's dtype, float32 over a half-precision one (peft's autocast_adapter_dtype) or int8 one."""
        dtype, _ = wrapper.base_dtype_device()
        return torch.float32 if dtype in HALF and self.autocast_adapter_dtype else dtype

    def _replace(self, path: str, new: nn.Module) -> None:
        parent_path, _, name = path.rpartition(".")
        parent = self.model.get_submodule(parent_path) if parent_path else self.model
        setattr(parent, name, new)

    def _lora_layer(self, path: str) -> LoraLinear:
        module = self.model.get_submodule(path)
        if isinstance(module, LoraLinear):
            return module
        if isinstance(module, ModulesToSave):
            raise ConfigError(f"LoraConfig: {path} is in another adapter's modules_to_save; it cannot get LoRA too")
        wrapper = LoraLinear(module)
        wrapper.active = self.active_adapter
        self._replace(path, wrapper)
        return wrapper

    def owned_module(self, name: str) -> str | None:
        """Our module holding exactly the tensors of the transformers module `name` (None: nothing of it here)."""
        ours = {e.ours for e in self.layout.entries_under(name)}
        if not ours:
            return None
        parts = [o.split(".") for o in ours]
        common = []
        for pieces in zip(*[p[:-1] for p in parts], strict=False):
            if len(set(pieces)) > 1:
                break
            common.append(pieces[0])
        path = ".".join(common)
        module = unwrapped(self.model.get_submodule(path)) if path else self.model
        held = {f"{path}.{n}" if path else n for n, _ in module.named_parameters()}
        if not path or held != ours or any(e.rows is not None and e.rows != range(len(e.rows))
                                           for e in self.layout.entries_under(name)):
            raise ConfigError(f"LoraConfig: modules_to_save {name!r} shares its tensors with other modules in "
                              "triformers' fused layout; it cannot be trained and saved on its own")
        return path

    def _save_modules(self, adapter: str, config: LoraConfig) -> None:
        for name in config.modules_to_save or []:
            matched = [m for m in self.layout.modules if m.endswith(name)
                       and not any(m.startswith(o + ".") for o in self.layout.modules if o.endswith(name))]
            paths = [p for p in (self.owned_module(m) for m in matched) if p is not None]
            if not paths and name not in HEADS_BY_TASK.get(config.task_type, []):
                raise ConfigError(f"LoraConfig: modules_to_save {name!r} matches no module of this model")
            for path in paths:
                module = self.model.get_submodule(path)
                if isinstance(module, LoraLinear):
                    raise ConfigError(f"LoraConfig: modules_to_save {name!r} is a LoRA target of another adapter")
                if not isinstance(module, ModulesToSave):
                    module = ModulesToSave(module)
                    module.active = self.active_adapter
                    self._replace(path, module)
                module.add(adapter)

    def _train_lora_biases(self) -> None:
        """bias="lora_only": the bias of each targeted module trains (a slice of a fused bias on its own)."""
        for wrapper in self.lora_layers():
            if wrapper.base_layer.bias is None:
                continue
            parts = {s.part.short: s.part for slices in wrapper.slices.values() for s in slices.values()}
            covered = sum(len(p.rows) for p in parts.values())
            if covered < wrapper.out_features:
                for part in parts.values():
                    wrapper.train_bias(part)

    # ---- the adapters' state ---------------------------------------------------------------------------------
    def lora_layers(self) -> list[LoraLinear]:
        return [m for m in self.model.modules() if isinstance(m, LoraLinear)]

    def saved_modules(self) -> list[tuple[str, ModulesToSave]]:
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, ModulesToSave)]

    def set_adapter(self, adapter: str) -> None:
        if adapter not in self.peft_config:
            raise ValueError(f"Adapter {adapter} not found.")
        self.active_adapter = adapter
        for module in self.model.modules():
            if isinstance(module, (LoraLinear, ModulesToSave)):
                module.active = adapter
        self._mark_trainable()

    def _mark_trainable(self) -> None:
        """Only the active adapter trains (none in inference mode), with the biases its `bias` setting names."""
        config = self.peft_config[self.active_adapter]
        trains = not config.inference_mode
        for param in self.model.parameters():
            param.requires_grad_(False)
        for wrapper in self.lora_layers():
            for store in (wrapper.lora_A, wrapper.lora_B):
                if self.active_adapter in store:
                    store[self.active_adapter].requires_grad_(trains)
            if config.bias == "lora_only":
                wrapper.lora_bias.requires_grad_(trains)
                if not wrapper.lora_bias and wrapper.base_layer.bias is not None and wrapper.slices:
                    wrapper.base_layer.bias.requires_grad_(trains)
        for _, module in self.saved_modules():
            if self.active_adapter in module.modules_to_save:
                module.modules_to_save[self.active_adapter].requires_grad_(trains)
        if config.bias == "all" and trains:
            saved = [n for n, _ in self.saved_modules()]
            for entry in self.layout.entries.values():
                if entry.name.endswith(".bias") and not any(entry.ours.startswith(n + ".") for n in saved):
                    self.param(entry.ours).requires_grad_(True)

    def param(self, ours: str) -> torch.Tensor:
        """Our parameter `ours` (a name of the unwrapped model), looked up through adapter wrappers."""
        path, _, leaf = ours.rpartition(".")
        module = unwrapped(self.model.get_submodule(path)) if path else self.model
        return getattr(module, leaf)

    def enable_adapter_layers(self, enabled: bool = True) -> None:
        for module in self.model.modules():
            if isinstance(module, (LoraLinear, ModulesToSave)):
                module.disabled = not enabled

    def disable_adapter_layers(self) -> None:
        self.enable_adapter_layers(False)

    def delete_adapter(self, adapter: str) -> None:
        if adapter not in self.peft_config:
            raise ValueError(f"Adapter {adapter} does not exist")
        del self.peft_config[adapter]
        for module in self.model.modules():
            if isinstance(module, (LoraLinear, ModulesToSave)):
                module.remove(adapter)
        if self.active_adapter == adapter:
            remaining = list(self.peft_config)
            if remaining:
                logger.warning("Adapter %s was active which is now deleted. Setting active adapter to %s.", adapter,
                               remaining[0])
                self.set_adapter(remaining[0])
            else:
                self.active_adapter = None

    # ---- taking the adapters out -----------------------------------------------------------------------------
    def unload_and_optionally_merge(self, merge: bool, safe_merge: bool = False,
                                    adapter_names: list[str] | None = None) -> nn.Module:
        """The model with the plain layers back: merged (B A * scale added into the rows of our weights) or not;
        a module_to_save becomes the active adapter's copy, as in peft."""
        adapters = adapter_names if adapter_names is not None else [self.active_adapter]
        for path, module in [(n, m) for n, m in self.model.named_modules()
                             if isinstance(m, (LoraLinear, ModulesToSave))]:
            if isinstance(module, LoraLinear):
                new = module.merged_layer(adapters, safe_merge) if merge else module.unmerged_layer()
            else:
                new = module.current() if not module.disabled else module.original_module
            self._replace(path, new)
        return self.model  # its parameters stay frozen, as peft leaves them
