"""Weight files of a model folder: safetensors (memory-mapped), shards through an index, `pytorch_model.bin`.

Nothing in a checkpoint is ever executed: `.bin` files are read with `torch.load(weights_only=True)`,
which refuses pickles that build objects or call functions. Shard names from an index file stay
inside the model folder.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from .files import read_json

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"


def _inside(folder: Path, name: str, index_file: Path) -> Path:
    """A shard named by an index file, refused if the name would leave the model folder.

    The check is on the name, not on the resolved path: in the Hugging Face cache every file of a
    snapshot is a symlink into `blobs/`, outside the snapshot folder, and that is fine.
    """
    if (not isinstance(name, str) or not name or os.path.isabs(name) or Path(name).anchor
            or ".." in Path(name).parts):
        raise CheckpointError(f"{index_file}: shard name {name!r} points outside the model folder; refused")
    return folder / name


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder, safetensors first, shards in index order."""
    folder = Path(folder)
    for index_name in (SAFE_INDEX, TORCH_INDEX):
        index_file = folder / index_name
        if index_file.is_file():
            index = read_json(index_file, "weight index", CheckpointError)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index_file}: missing or empty 'weight_map'")
            for shard in weight_map.values():  # every name checked (and hashable) before any is used
                _inside(folder, shard, index_file)
            shards = list(dict.fromkeys(weight_map.values()))
            paths = [_inside(folder, shard, index_file) for shard in shards]
            for shard, p in zip(shards, paths, strict=True):
                if not p.is_file():
                    raise CheckpointError(f"{index_file}: shard {shard!r} is missing from {folder}")
            return paths
    for name in (SAFE_WEIGHTS, TORCH_WEIGHTS):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"no weights in {folder}: expected {SAFE_WEIGHTS}, {SAFE_INDEX} or {TORCH_WEIGHTS}")


def _read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                yield key, f.get_tensor(key)  # memory-mapped; no copy until used
    except SafetensorError as err:
        raise CheckpointError(f"corrupt or truncated safetensors file {path}: {err}") from None
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from None


def _read_torch_bin(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        mmap = zipfile.is_zipfile(path)  # the torch zip format can be memory-mapped
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it is not a plain tensor checkpoint (the pickle asks to run code "
            f"or build objects; only tensors are accepted). Detail: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"corrupt or truncated checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    yield from state.items()


def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """All tensors of a checkpoint folder, and the file each came from (for error messages)."""
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for path in weight_files(folder):
        reader = _read_safetensors if path.suffix == ".safetensors" else _read_torch_bin
        for key, tensor in reader(path):
            tensors[key] = tensor
            origin[key] = path
    return tensors, origin
