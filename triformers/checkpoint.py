"""Strict loading and atomic saving of Hugging Face checkpoints, derived from a dialect's weight table.

Loading: every parameter of the body comes from the checkpoint with the right shape (else an error
names the keys, shapes and file); a task head the checkpoint lacks is initialised and reported in one
line; tensors of heads the model does not have are reported as unused; known buffers are dropped
silently. The model is built on the meta device and filled in place, so no random init is wasted and
memory peaks near the size of the weights.
Saving: config.json and model.safetensors written under temporary names, then renamed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from . import hub
from .config import ModelConfig
from .dialects import Dialect, get_dialect
from .errors import CheckpointError, ConfigError
from .layers.linear import is_transposed, mapped_from

logger = logging.getLogger("triformers")
LEGACY_NAMES = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
                (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))
# Refused: config.json asks for code to be imported from the model folder or the hub.
REMOTE_CODE_KEYS = ("auto_map",)


def read_config(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[Dialect, ModelConfig]:
    """config.json (+ overrides in its own key names) -> the dialect and our ModelConfig."""
    path = Path(folder) / "config.json"
    hf = hub.read_json(path, "config.json")
    for key in REMOTE_CODE_KEYS:
        if key in hf:
            logger.warning("%s: ignoring %r (triformers never runs code from a model folder)", path, key)
            hf.pop(key)
    overrides = dict(overrides or {})
    if overrides.pop("trust_remote_code", False):
        raise ConfigError(f"{path}: trust_remote_code=True is refused: triformers never runs code from a model "
                          "folder or the hub, it loads its built-in dialects only (drop the argument)")
    if "id2label" in overrides and "num_labels" not in overrides:
        overrides["num_labels"] = len(overrides["id2label"])
    if ("num_labels" in overrides and "id2label" not in overrides
            and len(hf.get("id2label") or {}) != overrides["num_labels"]):
        overrides["id2label"] = {}  # fresh LABEL_i names, as transformers does
    hf.update(overrides)
    model_type = hf.get("model_type")
    if not isinstance(model_type, str):
        raise ConfigError(f"{path}: missing or invalid 'model_type' (got {model_type!r})")
    dialect = get_dialect(model_type, where=str(path))
    config = dialect.config_from_hf(hf, str(path))
    used = set(dialect.config_to_hf(config)) | {"model_type", "architectures", "transformers_version", "dtype",
                                                 "torch_dtype", "label2id"}
    config.extra = {k: v for k, v in hf.items() if k not in used}
    return dialect, config


def config_to_json(config: ModelConfig, head: str | None) -> dict[str, Any]:
    dialect = get_dialect(config.model_type)
    out = {**config.extra, **dialect.config_to_hf(config), "model_type": config.model_type}
    out["architectures"] = [dialect.architectures.get(head, dialect.architectures.get(None))]
    return out


def _legacy(key: str) -> str:
    for pattern, new in LEGACY_NAMES:
        key = pattern.sub(new, key)
    return key


def _set_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)
    else:
        module._buffers[leaf] = tensor


def cast(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Cast floating weights to dtype (those already in it are kept, not copied); T5's `wo` (mlp.down)
    stays fp32 when the config asks."""
    if dtype is None:
        return model
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(_param_dtype(model.config, name, dtype))
    return model


def _param_dtype(config: ModelConfig, name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a floating parameter is loaded in: `dtype`, except T5's `wo` kept in fp32 in half precision."""
    if (dtype in (torch.float16, torch.bfloat16) and getattr(config, "mlp_down_fp32", False)
            and ".mlp.down." in name):
        return torch.float32
    return dtype


def load_state(model: nn.Module, dialect: Dialect, tensors: dict[str, torch.Tensor], origin: dict[str, Path],
               ignore_mismatched_sizes: bool = False, dtype: torch.dtype | None = None) -> dict[str, list[str]]:
    """Fill a meta-device model from checkpoint tensors, floating ones in `dtype` (default: torch's
    default dtype); return what was new, unused, mismatched."""
    config: ModelConfig = model.config
    dtype = dtype or torch.get_default_dtype()
    prefix = dialect.base_prefix
    available: dict[str, str] = {}  # normalised name -> name in the checkpoint
    for key in tensors:
        name = _legacy(key)
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        available[name] = key
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    where = sorted({str(p) for p in origin.values()})
    filled, used = set(), set()
    missing, mismatched, new = [], [], []
    for rule in dialect.rules(config, model.head):
        for ours, theirs in rule.expand(config):
            if ours not in params:
                continue  # a head this model does not have: its tensors stay unused
            found = []
            for name in theirs:
                alternatives = [a for a in name.split("|") if a in available]
                if alternatives:
                    found.append(available[alternatives[0]])
                    used.update(available[a] for a in alternatives)
            if len(found) < len(theirs):
                (new if rule.head is not None else missing).append(ours if rule.head else " + ".join(theirs))
                continue
            sources = tuple(tensors[k] for k in found)
            value = rule.load(sources, config) if rule.load else sources[0]
            target = params[ours]
            if value.is_floating_point() != target.is_floating_point():
                raise CheckpointError(f"dtype mismatch in {origin[found[0]]}: {', '.join(found)} is {value.dtype}, "
                                      f"the model needs a {'floating' if target.is_floating_point() else 'integer'} "
                                      "tensor")
            if tuple(value.shape) != tuple(target.shape):
                detail = f"{', '.join(found)} has shape {tuple(value.shape)}, the config needs {tuple(target.shape)}"
                if rule.head is not None and ignore_mismatched_sizes:
                    mismatched.append(detail)
                    new.append(ours)
                    continue
                hint = " (pass ignore_mismatched_sizes=True to re-initialise this head)" if rule.head else ""
                raise CheckpointError(f"shape mismatch in {origin[found[0]]}: {detail}{hint}")
            if value.is_floating_point():
                value = value.to(_param_dtype(config, ours, dtype))
            if not is_transposed(value):  # GPT-2's Conv1D weights stay views of the file until used (layers.linear)
                value = value.contiguous()
            _set_tensor(model, ours, value)
            for key, source in zip(found, sources, strict=True):
                if source.untyped_storage().data_ptr() != value.untyped_storage().data_ptr():
                    hub.release_pages(source, origin[key])  # copied out: keep one copy resident, not two
                elif is_transposed(value):
                    mapped_from(model.get_parameter(ours), origin[key])  # released once written out row-major
            filled.add(ours)
    if missing:
        raise CheckpointError(f"checkpoint {', '.join(where)} lacks {len(missing)} tensors the model needs: "
                              + "; ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    unfilled = [name for name in params if name not in filled and name not in new]
    if unfilled:
        raise CheckpointError(f"{dialect.model_type} weight table does not cover parameters {unfilled[:8]}")
    unused = sorted(k for k in tensors if k not in used and not dialect.is_ignored(_legacy(k).removeprefix(prefix)))
    _initialise_new(model, new)
    if new:
        logger.warning("newly initialised (not in the checkpoint): %s", ", ".join(new))
    if unused:
        logger.warning("unused checkpoint tensors (no such head in %s): %s", type(model).__name__,
                       ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))
    for detail in mismatched:
        logger.warning("re-initialised after a size mismatch: %s", detail)
    return {"new": new, "unused": unused, "mismatched": mismatched}


def _initialise_new(model: nn.Module, names: list[str]) -> None:
    modules = []
    for name in names:
        module_name = name.rpartition(".")[0]
        module = model.get_submodule(module_name) if module_name else model
        if module not in modules:
            modules.append(module)
    for module in modules:
        module.to_empty(device="cpu", recurse=False)
    model.init_weights(modules)


def load_pretrained(cls, name_or_path, *, head=None, dtype=None, revision=None, ignore_mismatched_sizes=False,
                    quantize=None, overrides=None):
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize must be None or 'int8', got {quantize!r}")
    folder = hub.resolve(name_or_path, revision=revision)
    dialect, config = read_config(folder, overrides)
    if dialect.family != cls.family:
        raise ConfigError(f"{folder / 'config.json'}: model_type {dialect.model_type!r} is a {dialect.family} "
                          f"model, not {cls.family} ({cls.__name__})")
    tensors, origin = hub.read_weights(folder)
    config = dialect.config_for_weights(config, tensors)
    with torch.device("meta"):
        model = cls(config, head=head)
    if dtype == "auto":
        dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), None)
    load_state(model, dialect, tensors, origin, ignore_mismatched_sizes, dtype)
    del tensors
    model = cast(model, dtype).eval()  # new heads (initialised in the default dtype) follow the rest
    if quantize == "int8":
        from .quantization import quantize_int8

        quantize_int8(model)
    return model


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a saved model is as readable as any file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def state_dict_to_hf(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our parameters under the checkpoint's names, through the save side of the weight table."""
    config: ModelConfig = model.config
    dialect = get_dialect(config.model_type)
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    prefix = dialect.base_prefix if model.head is not None else ""
    out: dict[str, torch.Tensor] = {}
    for rule in dialect.rules(config, model.head):
        for ours, theirs in rule.expand(config):
            if ours not in params:
                continue
            tensor = params[ours].detach()
            values = rule.save(tensor, config) if rule.save else (tensor,)
            for name, value in zip(theirs, values, strict=True):
                name = name.split("|")[0]
                full = name if rule.head not in (None, "pooler") else prefix + name
                out[full] = value.to("cpu").contiguous().clone()
    return out


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = state_dict_to_hf(model)
    config = config_to_json(model.config, model.head)
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    _atomic_write(folder / hub.SAFE_WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(folder / "config.json", lambda tmp: Path(tmp).write_text(text))
