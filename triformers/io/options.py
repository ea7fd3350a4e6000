"""The keywords transformers' `from_pretrained` takes besides config overrides, sorted out in one place.

`split(kwargs)` takes them out of a call's keywords: where the files come from (`HubOptions`: `revision`,
`cache_dir`, `local_files_only`, `token`, `force_download`, `subfolder`) and how the model is built
(`LoadOptions`: `dtype` / `torch_dtype`, `device_map`, `attn_implementation`, `use_safetensors`,
`low_cpu_mem_usage`). None of them reaches the config (so none is saved); what is left are config overrides,
which `io.pretrained` checks against the dialect's keys. Refused with a clear error: `trust_remote_code=True`,
a `device_map` over more than one device, an attention implementation other than sdpa / eager.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ..memory import parse_device, parse_dtype

ATTENTION = ("sdpa", "eager")
# config.json keys every transformers config (PretrainedConfig) takes as overrides, whatever the dialect
COMMON_CONFIG_KEYS = frozenset({
    "output_hidden_states", "output_attentions", "return_dict", "use_cache", "label2id", "id2label", "num_labels",
    "problem_type", "architectures", "finetuning_task", "tokenizer_class", "prefix", "task_specific_params",
    "sep_token_id", "is_decoder", "add_cross_attention", "chunk_size_feed_forward", "pruned_heads",
    "tie_word_embeddings", "model_type"})


@dataclass
class HubOptions:
    revision: str | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False
    token: str | bool | None = None
    force_download: bool = False
    subfolder: str = ""


@dataclass
class LoadOptions:
    dtype: torch.dtype | str | None = None  # a torch dtype, or "auto": the checkpoint's own
    device: torch.device | None = None  # where the model goes after loading (device_map)
    attn_implementation: str | None = None
    use_safetensors: bool | None = None  # True: safetensors only; False: pytorch_model.bin only


def split(kwargs: dict[str, Any]) -> tuple[HubOptions, LoadOptions, dict[str, Any]]:
    """(hub options, load options, the config overrides left) from a `from_pretrained` call's keywords."""
    kwargs = dict(kwargs)
    if kwargs.pop("trust_remote_code", False):
        raise ConfigError("trust_remote_code=True is refused: triformers never runs code from a model folder or the "
                         "hub, it loads its built-in dialects only (drop the argument)")
    hub = HubOptions(**{name: kwargs.pop(name) for name in list(kwargs) if name in HubOptions.__dataclass_fields__})
    if hub.subfolder is None:
        hub.subfolder = ""
    torch_dtype = kwargs.pop("torch_dtype", None)
    dtype = kwargs.pop("dtype", None)
    if torch_dtype is not None and dtype is not None and parse_dtype(torch_dtype) != parse_dtype(dtype):
        raise InputError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give one (torch_dtype is the "
                         "older name of dtype)")
    kwargs.pop("low_cpu_mem_usage", None)  # always so: weights are read into a model built on the meta device
    load = LoadOptions(dtype=parse_dtype(dtype if dtype is not None else torch_dtype),
                       device=device_of(kwargs.pop("device_map", None)),
                       attn_implementation=attention(kwargs.pop("attn_implementation", None)),
                       use_safetensors=kwargs.pop("use_safetensors", None))
    return hub, load, kwargs


def device_of(device_map: Any) -> torch.device | None:
    """The one device a `device_map` puts the model on ("auto": CUDA when there is one, else the CPU)."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        devices = {str(_device(d, exists=False)) for d in device_map.values()}
        if len(devices) != 1:
            raise InputError(f"device_map puts parts of the model on {sorted(devices)}: triformers loads a model onto "
                             "one device (splitting one over several is not supported); give one device")
        return _device(next(iter(device_map.values())))
    if device_map == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return _device(device_map)


def _device(value: Any, exists: bool = True) -> torch.device:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"cuda:{value}"
    if value in ("disk", "meta"):
        raise InputError(f"device_map {value!r} is not supported: triformers keeps the whole model on one device")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise InputError(f"device_map: {value!r} is not a device (give 'auto', 'cpu', 'cuda', 'cuda:0', a "
                         "torch.device, or a dict mapping modules to one device)") from None
    return parse_device(value, "device_map") if exists else device  # exists: one this machine has


def attention(name: Any) -> str | None:
    if name is None or name in ATTENTION:
        return name
    raise InputError(f"attn_implementation={name!r} is not supported: use 'sdpa' (the default) or 'eager' "
                     "(which also forms attention weights)")


def check_overrides(overrides: dict[str, Any], dialect: Any, file_keys: Any, where: str) -> None:
    """An InputError naming each override that is neither a config key of the dialect, nor one of the file's,
    nor a key every transformers config takes (instead of writing it into the config as a new key)."""
    from ..generation.config import GLOBAL_DEFAULTS

    known = dialect.key_names() | set(file_keys) | COMMON_CONFIG_KEYS | set(GLOBAL_DEFAULTS)
    unknown = sorted(name for name in overrides if name not in known)
    if unknown:
        raise InputError(f"{where}: from_pretrained got {', '.join(map(repr, unknown))}, which "
                         f"{'is' if len(unknown) == 1 else 'are'} neither a loading option nor a {dialect.model_type} "
                         "config key")
