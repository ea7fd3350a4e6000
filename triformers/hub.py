"""Where a model lives and how its files are read.

A name resolves to a local folder, else to a snapshot in the Hugging Face cache layout
(`models--org--name/snapshots/<commit>/`, honouring HF_HUB_CACHE / HF_HOME and `revision`), else to a
download through `huggingface_hub`. Weights come from `model.safetensors` (memory-mapped), a sharded
`model.safetensors.index.json`, or `pytorch_model.bin` read with `torch.load(weights_only=True)`:
nothing in a checkpoint is ever executed.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open

from .errors import CheckpointError, ConfigError, ModelNotFoundError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
# Files worth fetching from the hub: configs, tokenizers, weights (safetensors preferred).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _cached_snapshot(repo_id: str, revision: str | None, cache_dir: Path) -> Path | None:
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    revision = revision or "main"
    if _COMMIT.match(revision):
        commit = revision
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    snapshot = repo / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def resolve(name_or_path: str | os.PathLike, revision: str | None = None,
            cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the local folder holding a model: a path, a cached snapshot, or a fresh download."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    looked = [f"local folder {path.resolve()}"]
    if path.exists():
        raise ModelNotFoundError(f"{name!r} is a file, not a model folder (expected config.json and weights inside)")
    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    if re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name) and ".." not in name:
        snapshot = _cached_snapshot(name, revision, cache)
        if snapshot is not None:
            return snapshot
        repo_folder = cache / ("models--" + name.replace("/", "--"))
        looked.append(f"Hugging Face cache {repo_folder} (revision {revision or 'main'})")
        if not is_offline():
            try:
                from huggingface_hub import snapshot_download

                return Path(snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=HUB_PATTERNS))
            except Exception as err:  # network errors, missing repos, gated repos: one clear message
                looked.append(f"the hub ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
        else:
            looked.append("the hub was not asked (HF_HUB_OFFLINE is set)")
    raise ModelNotFoundError(f"model {name!r} not found; looked in: " + "; ".join(looked))


def read_json(path: Path, what: str = "JSON file") -> dict:
    """Read a JSON object, with errors that name the file and the position of a syntax error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"malformed {what} {path}: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"malformed {what} {path}: expected a JSON object, got {type(data).__name__}")
    return data


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
            index = read_json(index_file, "weight index")
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


_MADV_DONTNEED = 4  # Linux


def release_pages(tensor: torch.Tensor, path: Path) -> None:
    """Drop the resident pages of a tensor that was memory-mapped from the safetensors file `path`, once
    its values have been copied out (transposed, cast): they would otherwise stay in the process' memory
    next to the copy. Only pages wholly inside the tensor are dropped; touched again, they are re-read
    from the file. Only for safetensors' read-only file mappings (on anonymous memory the call would zero
    the data), and only on Linux; elsewhere a no-op."""
    if path.suffix != ".safetensors" or not sys.platform.startswith("linux") or tensor.device.type != "cpu":
        return
    page = os.sysconf("SC_PAGE_SIZE")
    begin = tensor.data_ptr()
    start = -(-begin // page) * page
    end = (begin + tensor.numel() * tensor.element_size()) // page * page
    if end > start:
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc


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
