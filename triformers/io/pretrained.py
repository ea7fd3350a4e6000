"""Hugging Face model folders: find one and read its config once, load a model from it, save one.

`locate(name)` resolves a name or path to its folder and reads config.json through the dialect once;
the `Checkpoint` it returns is what the Auto classes, `from_pretrained`, the pipelines and the CLI hand
to `load_model`, so no call resolves or parses twice; should the folder be re-saved between the two, the
config is read again, so that config and weights always come from one save. A GGUF file (`gguf_file=` in a
folder or repository, or a path to a `.gguf`) is config, weights and tokenizer in one: its header is parsed
once, kept open in the `Checkpoint`, and its metadata read as a config.json dict (`io.gguf_mapping`).
`save_pretrained` publishes config.json and model.safetensors as one set, and removes the weight files of an
earlier save that the new set does not replace (an old shard index would otherwise win on the next load): see
`io.publish`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import ModelConfig
from ..dialects import Dialect, get_dialect
from ..dialects.base import WRITTEN_BY_SAVER
from ..errors import CheckpointError, ConfigError, InputError
from ..generation.config import GENERATION_CONFIG_NAME, GLOBAL_DEFAULTS, GenerationConfig
from . import hub
from .files import atomic_write, read_json, write_json
from .publish import identity, publish, reading
from .state import cast, load_state, state_dict_to_hf
from .weights import SAFE_WEIGHTS, read_weights, weight_names

logger = logging.getLogger("triformers")
# Ignored with a warning: config.json asks for code to be imported from the model folder or the hub.
REMOTE_CODE_KEYS = ("auto_map",)
# config.json keys transformers reads as generation settings and does not write back (`use_cache` stays)
GENERATION_PARAMETERS = tuple(k for k in GLOBAL_DEFAULTS if k != "use_cache")


@dataclass
class Checkpoint:
    """A model folder, resolved, with its config read once."""

    folder: Path
    dialect: Dialect
    config: ModelConfig
    overrides: dict[str, Any] | None = None
    stamp: tuple[int, ...] | None = None  # config.json's (or the GGUF file's) `identity` when it was read
    generation: dict[str, Any] | None = None  # generation_config.json, when the folder has one
    gguf: Path | None = None  # the GGUF file this checkpoint is, if it is one
    source: Any = field(default=None, repr=False, compare=False)  # that file's parsed header (`io.gguf.GGUFFile`)

    @property
    def config_file(self) -> Path:
        """Where the config came from (named in errors): config.json, or the GGUF file."""
        return self.gguf if self.gguf is not None else self.folder / "config.json"


def read_config(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[Dialect, ModelConfig]:
    """config.json (+ overrides in its own key names) -> the dialect and our ModelConfig."""
    path = Path(folder) / "config.json"
    with reading(folder) as view:
        hf = read_json(view.path("config.json"), "config.json")
    return config_from_hf(hf, path, overrides)


def config_from_hf(hf: dict[str, Any], path: Path, overrides: dict[str, Any] | None = None
                   ) -> tuple[Dialect, ModelConfig]:
    """A config.json dict (read from `path`, + overrides in its own key names) -> the dialect and our ModelConfig."""
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
           overrides: dict[str, Any] | None = None, gguf_file: str | os.PathLike | None = None) -> Checkpoint:
    """The folder of `name_or_path` (local, cached or downloaded) and its config, read once; with `gguf_file`
    (a file in that folder or repository), or for a path to a `.gguf` file, that GGUF file's."""
    if isinstance(name_or_path, Checkpoint):
        if not overrides:
            return name_or_path
        name_or_path, gguf_file = name_or_path.gguf or name_or_path.folder, None
    gguf = gguf_location(name_or_path, gguf_file, revision)
    if gguf is not None:
        return _locate_gguf(gguf, overrides)
    folder = hub.resolve(name_or_path, revision=revision)
    _hint_gguf(folder)
    with reading(folder) as view:
        dialect, config = read_config(folder, overrides)
        stamp = identity(view.path("config.json"))
        generation = None
        if dialect.family != "encoder" and view.path(GENERATION_CONFIG_NAME).is_file():
            generation = read_json(view.path(GENERATION_CONFIG_NAME), GENERATION_CONFIG_NAME)
    return Checkpoint(folder, dialect, config, dict(overrides or {}), stamp, generation)


def _hint_gguf(folder: Path) -> None:
    """A folder of GGUF files without config.json: say which file to name rather than that config.json is missing."""
    if (folder / "config.json").exists() or (folder / "config.json").is_symlink():
        return
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if found:
        raise ConfigError(f"{folder} has no config.json but holds GGUF files ({', '.join(found[:5])}): pass "
                          f"gguf_file={found[0]!r} (or the path to the file)")


def gguf_location(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike | None,
                  revision: str | None = None) -> Path | None:
    """The GGUF file a name means: `gguf_file` inside the folder or repository `name_or_path` (an absolute
    `gguf_file` as it is), or `name_or_path` itself when it is a path to a `.gguf` file; None otherwise."""
    if gguf_file is None:
        path = Path(name_or_path).expanduser()
        is_file = (path.exists() or path.is_symlink()) and not path.is_dir()
        return path if is_file and path.suffix.lower() == ".gguf" else None
    if Path(gguf_file).expanduser().is_absolute():
        return Path(gguf_file).expanduser()
    return hub.resolve(name_or_path, revision=revision, filename=str(gguf_file)) / gguf_file


def _locate_gguf(path: Path, overrides: dict[str, Any] | None) -> Checkpoint:
    from .gguf import GGUFFile
    from .gguf_mapping import hf_config

    source = GGUFFile(path)
    hf = hf_config(source)
    hf.pop("_model_name_or_path", None)  # transformers' record of `general.name`, not a config key to save
    dialect, config = config_from_hf(hf, path, overrides)
    return Checkpoint(path.parent, dialect, config, dict(overrides or {}), source.identity, gguf=path, source=source)


def gguf_source(checkpoint: Checkpoint) -> Any:
    """The open, parsed GGUF file of a checkpoint, parsed again if the checkpoint came without it."""
    from .gguf import GGUFFile

    if checkpoint.source is not None:
        return checkpoint.source
    source = GGUFFile(checkpoint.gguf)
    if checkpoint.stamp is not None and source.identity != checkpoint.stamp:
        raise CheckpointError(f"{checkpoint.gguf} changed after its config was read; load it again")
    return source


def config_to_json(config: ModelConfig, head: str | None) -> dict[str, Any]:
    dialect = get_dialect(config.model_type)
    out = {**config.extra, **dialect.config_to_hf(config), "model_type": config.model_type}
    out["architectures"] = [dialect.architectures.get(head, dialect.architectures.get(None))]
    return out


def load_model(cls, checkpoint: Checkpoint, *, head: str | None = None, dtype: torch.dtype | str | None = None,
               ignore_mismatched_sizes: bool = False, quantize: str | None = None,
               generation_config: Any = None) -> nn.Module:
    """A model of family class `cls` (with `head`) filled from the checkpoint's weights, in eval mode;
    `generation_config` (as transformers' `from_pretrained` takes it) replaces the checkpoint's."""
    if quantize not in (None, "int8", "int4"):
        raise ConfigError(f"quantize must be None, 'int8' or 'int4', got {quantize!r}")
    if checkpoint.gguf is not None:  # config and weights from one open file: consistent by construction
        from .gguf_mapping import GGUFTensors

        tensors = GGUFTensors(gguf_source(checkpoint))
        origin = dict.fromkeys(tensors, checkpoint.gguf)
    else:
        tensors, origin, checkpoint = _folder_weights(checkpoint)
    dialect, config = checkpoint.dialect, checkpoint.config
    if dialect.family != cls.family:
        raise ConfigError(f"{checkpoint.config_file}: model_type {dialect.model_type!r} is a {dialect.family} "
                          f"model, not {cls.family} ({cls.__name__})")
    config = dialect.config_for_weights(config, tensors)
    with torch.device("meta"):
        model = cls(config, head=head)
    if dtype == "auto":  # a GGUF file says its float type; else the first floating tensor does
        dtype = getattr(tensors, "dtype", None) or next((t.dtype for t in tensors.values() if t.is_floating_point()),
                                                        None)
    load_state(model, dialect, tensors, origin, ignore_mismatched_sizes, dtype)
    del tensors
    model = cast(model, dtype).eval()  # new heads (initialised in the default dtype) follow the rest
    if generation_config is not None and model.head == "lm":
        from ..generation.prepare import as_generation_config

        model.generation_config = as_generation_config(generation_config)
    elif checkpoint.generation is not None and model.head == "lm":
        model.generation_config = _generation_config(checkpoint)
    if quantize == "int8":
        from ..layers.int8 import quantize_int8

        quantize_int8(model)
    elif quantize == "int4":
        from ..layers.int4 import quantize_int4

        quantize_int4(model)
    return model


def _generation_config(checkpoint: Checkpoint) -> GenerationConfig:
    try:
        config = GenerationConfig.from_dict(checkpoint.generation)
    except InputError as err:
        raise ConfigError(f"{checkpoint.folder / GENERATION_CONFIG_NAME}: {err}") from None
    config._original_hash = hash(config)
    return config


def _folder_weights(checkpoint: Checkpoint) -> tuple[Any, dict[str, Path], Checkpoint]:
    """The weights of a folder checkpoint, from the same save as its config (read again if re-saved)."""
    for _ in range(3):  # a folder re-saved after its config was read: read the config of the new save
        tensors, origin = read_weights(checkpoint.folder)
        if checkpoint.stamp is None or tensors.stamp == checkpoint.stamp:
            return tensors, origin, checkpoint
        checkpoint = locate(checkpoint.folder, overrides=checkpoint.overrides)
    raise CheckpointError(f"{checkpoint.folder} was saved again each time it was read; load it once it is quiet")


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> None:
    """config.json + model.safetensors (+ generation_config.json for a model that generates), published into
    `folder` as one set (old weight files removed). As transformers, generation settings an old config.json
    carried (BART's num_beams, ...) move to generation_config.json, which holds only the fields that are set."""
    state = state_dict_to_hf(model)
    config = config_to_json(model.config, model.head)
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.validate(strict=generation.was_modified())  # transformers' check before saving
        for key in GENERATION_PARAMETERS:
            if key in model.config.extra:
                config.pop(key, None)
    with publish(folder, stale=weight_names) as staging:
        save_file(state, str(staging / SAFE_WEIGHTS), metadata={"format": "pt"})
        write_json(staging / "config.json", config)
        if generation is not None:
            atomic_write(staging / GENERATION_CONFIG_NAME, generation.to_json_string())
