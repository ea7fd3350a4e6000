"""Hugging Face model folders: find one and read its config once, load a model from it, save one.

`locate(name)` resolves a name or path to its folder and reads config.json through the dialect once;
the `Checkpoint` it returns is what the Auto classes, `from_pretrained`, the pipelines and the CLI hand
to `load_model`, so no call resolves or parses twice; should the folder be re-saved between the two, the
config is read again, so that config and weights always come from one save. `save_pretrained` publishes
config.json and model.safetensors as one set, and removes the weight files of an earlier save that the
new set does not replace (an old shard index would otherwise win on the next load): see `io.publish`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import ModelConfig
from ..dialects import Dialect, get_dialect
from ..dialects.base import WRITTEN_BY_SAVER
from ..errors import CheckpointError, ConfigError
from . import hub
from .files import read_json, write_json
from .publish import identity, publish, reading
from .state import cast, load_state, state_dict_to_hf
from .weights import SAFE_WEIGHTS, read_weights, weight_names

logger = logging.getLogger("triformers")
# Ignored with a warning: config.json asks for code to be imported from the model folder or the hub.
REMOTE_CODE_KEYS = ("auto_map",)


@dataclass
class Checkpoint:
    """A model folder, resolved, with its config read once."""

    folder: Path
    dialect: Dialect
    config: ModelConfig
    overrides: dict[str, Any] | None = None
    stamp: tuple[int, ...] | None = None  # config.json's `identity` when it was read
    name: str | None = None  # the name or path it was asked for by (a hub id, a folder)

    @property
    def config_file(self) -> Path:
        return self.folder / "config.json"


def read_config(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[Dialect, ModelConfig]:
    """config.json (+ overrides in its own key names) -> the dialect and our ModelConfig."""
    path = Path(folder) / "config.json"
    with reading(folder) as view:
        hf = read_json(view.path("config.json"), "config.json")
    for key in REMOTE_CODE_KEYS:
        if key in hf:
            logger.warning("%s: ignoring %r (triformers never runs code from a model folder)", path, key)
            hf.pop(key)
    overrides = dict(overrides or {})
    if overrides.pop("trust_remote_code", False):
        raise ConfigError(f"{path}: trust_remote_code=True is refused: triformers never runs code from a model "
                          "folder or the hub, it loads its built-in dialects only (drop the argument)")
    model_type = overrides.get("model_type", hf.get("model_type"))
    if not isinstance(model_type, str):
        raise ConfigError(f"{path}: missing or invalid 'model_type' (got {model_type!r})")
    dialect = get_dialect(model_type, where=str(path))
    _override(hf, overrides, dialect)
    config = dialect.config_from_hf(hf, str(path))  # keys its table does not read go to config.extra
    if not dialect.keys:  # a dialect with translations of its own: what it does not write is kept
        used = set(dialect.config_to_hf(config)) | set(WRITTEN_BY_SAVER)
        config.extra = {k: v for k, v in hf.items() if k not in used}
    return dialect, config


def _override(hf: dict[str, Any], overrides: dict[str, Any], dialect: Dialect) -> None:
    """Apply overrides (in config.json's key names) to the keys read from the file."""
    if "id2label" in overrides and "num_labels" not in overrides:
        overrides["num_labels"] = len(overrides["id2label"])
    if ("num_labels" in overrides and "id2label" not in overrides
            and len(hf.get("id2label") or {}) != overrides["num_labels"]):
        hf.pop("id2label", None)  # fresh LABEL_i names, as transformers does
        hf.pop("label2id", None)
    for name, value in overrides.items():  # an override replaces its setting, under the file's name for it
        key = dialect.key_named(name)
        if key is not None:
            name = next((n for n in key.names if n in hf), key.name)
            for other in key.names:
                hf.pop(other, None)
        hf[name] = value


def locate(name_or_path: str | os.PathLike | Checkpoint, revision: str | None = None,
           overrides: dict[str, Any] | None = None) -> Checkpoint:
    """The folder of `name_or_path` (local, cached or downloaded) and its config, read once."""
    if isinstance(name_or_path, Checkpoint):
        if not overrides:
            return name_or_path
        folder, name = name_or_path.folder, name_or_path.name
    else:
        folder, name = hub.resolve(name_or_path, revision=revision), str(name_or_path)
    with reading(folder) as view:
        dialect, config = read_config(folder, overrides)
        stamp = identity(view.path("config.json"))
    return Checkpoint(folder, dialect, config, dict(overrides or {}), stamp, name)


def config_to_json(config: ModelConfig, head: str | None) -> dict[str, Any]:
    dialect = get_dialect(config.model_type)
    out = {**config.extra, **dialect.config_to_hf(config), "model_type": config.model_type}
    out["architectures"] = [dialect.architectures.get(head, dialect.architectures.get(None))]
    return out


def load_model(cls, checkpoint: Checkpoint, *, head: str | None = None, dtype: torch.dtype | str | None = None,
               ignore_mismatched_sizes: bool = False, quantize: str | None = None) -> nn.Module:
    """A model of family class `cls` (with `head`) filled from the checkpoint's weights, in eval mode."""
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize must be None or 'int8', got {quantize!r}")
    for _ in range(3):  # a folder re-saved after its config was read: read the config of the new save
        tensors, origin = read_weights(checkpoint.folder)
        if checkpoint.stamp is None or tensors.stamp == checkpoint.stamp:
            break
        name, checkpoint = checkpoint.name, locate(checkpoint.folder, overrides=checkpoint.overrides)
        checkpoint.name = name
    else:
        raise CheckpointError(f"{checkpoint.folder} was saved again each time it was read; load it once it is quiet")
    dialect, config = checkpoint.dialect, checkpoint.config
    if dialect.family != cls.family:
        raise ConfigError(f"{checkpoint.config_file}: model_type {dialect.model_type!r} is a {dialect.family} "
                          f"model, not {cls.family} ({cls.__name__})")
    config = dialect.config_for_weights(config, tensors)
    with torch.device("meta"):
        model = cls(config, head=head)
    if dtype == "auto":
        dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), None)
    load_state(model, dialect, tensors, origin, ignore_mismatched_sizes, dtype)
    del tensors
    model = cast(model, dtype).eval()  # new heads (initialised in the default dtype) follow the rest
    if quantize == "int8":
        from ..layers.int8 import quantize_int8

        quantize_int8(model)
    model.name_or_path = checkpoint.name or str(checkpoint.folder)  # as transformers: what it was loaded from
    return model


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> None:
    """config.json + model.safetensors, published into `folder` as one set (old weight files removed)."""
    state = state_dict_to_hf(model)
    config = config_to_json(model.config, model.head)
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    with publish(folder, stale=weight_names) as staging:
        save_file(state, str(staging / SAFE_WEIGHTS), metadata={"format": "pt"})
        write_json(staging / "config.json", config)
