"""LoraConfig and TaskType with peft's names, defaults and `adapter_config.json` layout (peft 0.21,
`peft/tuners/lora/config.py`, `peft/config.py`).

Target names are transformers' module names for the checkpoint's dialect (T5 `q`, `v`; GPT-2 `c_attn`; BERT
`query`, `value`, ...), never triformers' own: `targets.py` maps them onto triformers' fused layers.

peft's LoraConfig has many more fields than plain LoRA needs (DoRA, LoftQ, EVA, Megatron, ...). Each of them is a
field here too, with peft's default, so that a saved file has peft's full set of keys and a config asking for one
of those variants is refused by name (`NOT_IMPLEMENTED`) instead of being trained as plain LoRA. Reading a file:
a key neither peft 0.21 nor triformers knows is accepted (with a log line) only when its value is empty or off
(null, false, {}, []): newer peft releases add fields that way; any other value is refused, since triformers could
not tell what it changes.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.files import read_json, write_json
from ..io.publish import reading

logger = logging.getLogger("triformers")
CONFIG_NAME = "adapter_config.json"
PEFT_VERSION = "0.21.2"  # the peft release whose file layout is written (adapter_config.json's peft_version)
INIT_CHOICES = (True, False, "gaussian")


class TaskType(str, enum.Enum):
    """peft's task types; the PeftModel class `get_peft_model` returns follows it."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


# peft's LoRA variants, each off at its default: the field, and what it would switch on
NOT_IMPLEMENTED = {
    "use_dora": "DoRA", "lora_bias": "a bias on lora_B", "target_parameters": "LoRA on bare parameters",
    "megatron_config": "Megatron parallel layers", "trainable_token_indices": "trainable token rows",
    "loftq_config": "LoftQ", "eva_config": "EVA initialisation", "corda_config": "CorDA initialisation",
    "lora_ga_config": "LoRA-GA", "layer_replication": "layer replication", "use_qalora": "QA-LoRA",
    "alora_invocation_tokens": "activated LoRA", "arrow_config": "Arrow routing", "use_bdlora": "BD-LoRA",
    "velora_config": "VeLoRA", "kasa_config": "KaSA", "monteclora_config": "MonteCLoRA",
    "ensure_weight_tying": "tied adapters",
}


@dataclass
class PeftConfig:
    """The fields every peft adapter config has; `PeftConfig.from_pretrained(folder)` reads the folder's config
    (a LoraConfig: the only adapter type triformers implements)."""

    task_type: TaskType | str | None = None
    peft_type: str = "LORA"
    auto_mapping: dict | None = None
    peft_version: str | None = PEFT_VERSION
    base_model_name_or_path: str | None = None
    revision: str | None = None
    inference_mode: bool = False

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs: Any) -> LoraConfig:
        return LoraConfig.from_pretrained(folder, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The config as adapter_config.json holds it (sets as sorted lists, the task type as its name)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, set):
                value = sorted(value)
            if isinstance(value, enum.Enum):
                value = value.value
            out[f.name] = value
        return out


@dataclass
class LoraConfig(PeftConfig):
    """peft's LoraConfig: r, lora_alpha, lora_dropout, target_modules (transformers' module names, a list or a
    regex, or "all-linear"), bias ("none" | "all" | "lora_only"), modules_to_save, fan_in_fan_out (set as peft
    sets it: True on GPT-2's Conv1D layers), use_rslora (scale alpha / sqrt(r)), init_lora_weights (True: A
    kaiming-uniform, B zero; "gaussian": A ~ N(0, 1/r), B zero; False: both random), layers_to_transform /
    layers_pattern, rank_pattern / alpha_pattern (per-module r and alpha, matched on the module name's end)."""

    r: int = 8
    target_modules: list[str] | set[str] | str | None = None
    exclude_modules: list[str] | set[str] | str | None = None
    lora_alpha: int | float = 8
    lora_dropout: float = 0.0
    fan_in_fan_out: bool = False
    bias: str = "none"
    use_rslora: bool = False
    modules_to_save: list[str] | None = None
    init_lora_weights: bool | str = True
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, int | float] = field(default_factory=dict)
    megatron_config: dict | None = None
    megatron_core: str | None = "megatron.core"
    trainable_token_indices: list[int] | dict | None = None
    loftq_config: dict = field(default_factory=dict)
    eva_config: dict | None = None
    corda_config: dict | None = None
    lora_ga_config: dict | None = None
    use_dora: bool = False
    velora_config: dict | None = None
    alora_invocation_tokens: list[int] | None = None
    use_qalora: bool = False
    qalora_group_size: int = 16
    monteclora_config: dict | None = None
    layer_replication: list | None = None
    lora_bias: bool = False
    target_parameters: list[str] | None = None
    use_bdlora: dict | None = None
    arrow_config: dict | None = None
    kasa_config: dict | None = None
    ensure_weight_tying: bool = False

    def __post_init__(self) -> None:
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(self)}
        for name, what in NOT_IMPLEMENTED.items():
            if getattr(self, name) != defaults[name]:
                raise ConfigError(f"LoraConfig: {name}={getattr(self, name)!r} asks for {what}, which triformers "
                                  f"does not implement (plain LoRA only); leave it at {defaults[name]!r}")
        if self.peft_type != "LORA":
            raise ConfigError(f"LoraConfig: peft_type {self.peft_type!r}: triformers implements LoRA adapters only")
        if self.task_type is not None:
            try:
                self.task_type = TaskType(self.task_type)
            except ValueError:
                raise ConfigError(f"LoraConfig: task_type {self.task_type!r} is not one of "
                                  f"{[t.value for t in TaskType]}") from None
        self._check_numbers()
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = set(self.target_modules)  # as peft: a list is a set of names
        if isinstance(self.exclude_modules, (list, tuple)):
            self.exclude_modules = set(self.exclude_modules)
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ConfigError("LoraConfig: layers_to_transform cannot be used when target_modules is a regex (str)")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ConfigError("LoraConfig: layers_pattern needs layers_to_transform")

    def _check_numbers(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ConfigError(f"LoraConfig: r must be a positive integer, got {self.r!r}")
        if not isinstance(self.lora_alpha, (int, float)) or isinstance(self.lora_alpha, bool):
            raise ConfigError(f"LoraConfig: lora_alpha must be a number, got {self.lora_alpha!r}")
        if not isinstance(self.lora_dropout, (int, float)) or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.bias not in ("none", "all", "lora_only"):
            raise ConfigError(f"LoraConfig: bias must be 'none', 'all' or 'lora_only', got {self.bias!r}")
        if self.init_lora_weights not in INIT_CHOICES or (isinstance(self.init_lora_weights, int)
                                                          and not isinstance(self.init_lora_weights, bool)):
            raise ConfigError(f"LoraConfig: init_lora_weights={self.init_lora_weights!r} is not implemented by "
                              "triformers; use True (A kaiming-uniform, B zero), 'gaussian' or False (both random)")
        for name, pattern in (("rank_pattern", self.rank_pattern), ("alpha_pattern", self.alpha_pattern)):
            if not isinstance(pattern, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                                        and not isinstance(v, bool) for k, v in pattern.items()):
                raise ConfigError(f"LoraConfig: {name} must map module names (or regexes) to numbers, got {pattern!r}")
            if name == "rank_pattern" and any(not isinstance(v, int) or v <= 0 for v in pattern.values()):
                raise ConfigError(f"LoraConfig: rank_pattern ranks must be positive integers, got {pattern!r}")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, subfolder: str | None = None, **kwargs: Any) -> LoraConfig:
        """The adapter_config.json of a local adapter folder (`subfolder` inside it); `kwargs` override fields."""
        path = Path(folder) / (subfolder or "")
        with reading(path) as view:
            data = read_json(view.path(CONFIG_NAME), "adapter config")
        return cls.from_dict({**data, **kwargs}, where=str(path / CONFIG_NAME))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = CONFIG_NAME) -> LoraConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = {k: v for k, v in data.items() if k not in names and k != "runtime_config"}
        refused = {k: v for k, v in unknown.items() if v not in (None, False, {}, [])}
        if refused:
            raise ConfigError(f"{where}: unknown adapter config keys {sorted(refused)} (values "
                              f"{[refused[k] for k in sorted(refused)]}): neither peft {PEFT_VERSION} nor triformers "
                              "knows what they change; remove them or set them off")
        if unknown:
            logger.info("%s: ignoring keys peft %s does not have, all off: %s", where, PEFT_VERSION, sorted(unknown))
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """adapter_config.json in `folder`, written atomically (a whole adapter save publishes it with its weights:
        see `PeftModel.save_pretrained`)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        write_json(Path(folder) / CONFIG_NAME, self.to_dict())

    def scaling(self, r: int, alpha: float) -> float:
        """The factor on B A x: alpha / r, or alpha / sqrt(r) with use_rslora (Kalajdzievski 2023)."""
        return alpha / r ** 0.5 if self.use_rslora else alpha / r
