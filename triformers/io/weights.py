"""Weight files of a model folder: safetensors, shards through an index, `pytorch_model.bin`.

Nothing in a checkpoint is ever executed: `.bin` files are read with `torch.load(weights_only=True)`,
which refuses pickles that build objects or call functions. Shard names from an index file stay
inside the model folder, and a tensor is taken from the shard the index's `weight_map` names for it.

Every tensor is read into the process' own memory, never left as a view of a memory-mapped file: a
mapped page changes when the file is rewritten in place (`cp` over a checkpoint would change a model
already loaded) and kills the process with SIGBUS when the file is cut short. Read through a descriptor
opened once, a file renamed over or deleted meanwhile is still the file that was opened; a file
rewritten in place while it is read, or shorter than its header says, is a CheckpointError. Tensors are
read only when first asked for (`LazyTensors`), so tensors the model does not use cost no memory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import functools
import os
import pickle
import re
import struct
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError
from .files import UNLIMITED, open_regular, parse_json, read_json
from .publish import FolderView, identity, reading

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
SHARD_NAME = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
PREFETCH_THREADS = 4
PREFETCH_BYTES = 256 * 2**20  # read ahead of use by at most this much
_HUGE_PAGE = 2**21
DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
          "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64, "F16": torch.float16,
          "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64, "F8_E5M2": torch.float8_e5m2,
          "F8_E4M3": torch.float8_e4m3fn}


def _inside(folder: Path, name: str, index_file: Path) -> Path:
    """A shard named by an index file, refused if the name would leave the model folder.

    The check is on the name, not on the resolved path: in the Hugging Face cache every file of a
    snapshot is a symlink into `blobs/`, outside the snapshot folder, and that is fine.
    """
    if (not isinstance(name, str) or not name or os.path.isabs(name) or Path(name).anchor
            or ".." in Path(name).parts):
        raise CheckpointError(f"{index_file}: shard name {name!r} points outside the model folder; refused")
    return folder / name


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _index(view: FolderView, index_name: str) -> tuple[Path, dict[str, str]] | None:
    index_file = view.path(index_name)
    if not _present(index_file):
        return None
    index = read_json(index_file, "weight index", CheckpointError)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_file}: missing or empty 'weight_map'")
    for shard in weight_map.values():  # every name checked (and hashable) before any is used
        _inside(view.folder, shard, index_file)
    return index_file, weight_map


def _weight_files(view: FolderView, use_safetensors: bool | None = None
                  ) -> tuple[list[Path], dict[str, str] | None, Path | None]:
    """The checkpoint files of a folder (safetensors first, shards in index order), the index's
    weight_map (tensor -> shard name) and the index file, if there is one. `use_safetensors` (as transformers'
    `from_pretrained`): True reads safetensors only, False pytorch_model.bin only."""
    formats = {None: (0, 1), True: (0,), False: (1,)}[use_safetensors]
    for index_name in [(SAFE_INDEX, TORCH_INDEX)[i] for i in formats]:
        found = _index(view, index_name)
        if found is None:
            continue
        index_file, weight_map = found
        shards = list(dict.fromkeys(weight_map.values()))
        paths = [view.path(shard) if "/" not in shard else _inside(view.folder, shard, index_file)
                 for shard in shards]
        for shard, p in zip(shards, paths, strict=True):
            if not _present(p):
                raise CheckpointError(f"{index_file}: shard {shard!r} is missing from {view.folder}")
        return paths, weight_map, index_file
    names = [(SAFE_WEIGHTS, TORCH_WEIGHTS)[i] for i in formats]
    for name in names:
        if _present(view.path(name)):  # a FIFO or folder of that name is refused by the reader, not skipped
            return [view.path(name)], None, None
    expected = {None: f"{SAFE_WEIGHTS}, {SAFE_INDEX} or {TORCH_WEIGHTS}", True: f"{SAFE_WEIGHTS} or {SAFE_INDEX} "
                "(use_safetensors=True)", False: f"{TORCH_WEIGHTS} or {TORCH_INDEX} (use_safetensors=False)"}
    raise CheckpointError(f"no weights in {view.folder}: expected {expected[use_safetensors]}")


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder, safetensors first, shards in index order."""
    with reading(folder) as view:
        return _weight_files(view)[0]


def weight_names(folder: Path) -> list[str]:
    """The names of every weight file in `folder` (single files, indexes, shards named by an index or by
    the usual shard pattern): what a save of new weights must not leave behind."""
    folder = Path(folder)
    names = {n for n in (SAFE_WEIGHTS, SAFE_INDEX, TORCH_WEIGHTS, TORCH_INDEX) if (folder / n).is_file()}
    try:
        names |= {p.name for p in folder.iterdir() if SHARD_NAME.match(p.name)}
    except OSError:
        pass
    for index_name in (SAFE_INDEX, TORCH_INDEX):
        try:
            found = _index(FolderView(folder), index_name)
        except CheckpointError:
            continue  # an unreadable old index: the index itself goes, its shards stay unknown
        if found is not None:
            names |= {s for s in found[1].values() if "/" not in s and s not in (".", "..")}
    return sorted(names)


def huge_pages(tensor: torch.Tensor) -> None:
    """Ask Linux to back a large new tensor with transparent huge pages before it is written: one page fault
    (and one zeroing) per 2 MiB instead of per 4 KiB, which is most of the cost of reading a checkpoint from
    the page cache. A hint: elsewhere, or where the kernel declines, nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    begin = -(-tensor.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    end = (tensor.data_ptr() + tensor.numel() * tensor.element_size()) // _HUGE_PAGE * _HUGE_PAGE
    if end > begin:
        _libc().madvise(ctypes.c_void_p(begin), ctypes.c_size_t(end - begin), 14)  # MADV_HUGEPAGE


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc


class _SafetensorsFile:
    """One safetensors file: its header parsed and checked as the format requires, tensors read on demand."""

    def __init__(self, path: Path):
        self.path = path
        with open_regular(path, "safetensors file", UNLIMITED, CheckpointError) as (handle, info):
            self.fd = os.dup(handle.fileno())
        self.stamp = (info.st_size, info.st_mtime_ns)
        try:
            self.entries = self._header(info.st_size)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    def _fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"corrupt or truncated safetensors file {self.path}: {what}")

    def _header(self, size: int) -> dict[str, tuple[torch.dtype, tuple[int, ...], int, int]]:
        if size < 8:
            raise self._fail(f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", os.pread(self.fd, 8, 0))
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise self._fail(f"header length {length} does not fit a file of {size} bytes")
        raw = os.pread(self.fd, length, 8)
        if len(raw) < length or not raw.startswith(b"{"):
            raise self._fail("the header is not a JSON object")
        header = parse_json(raw, f"header of safetensors file {self.path}", CheckpointError)
        if not isinstance(header, dict):
            raise self._fail("the header is not a JSON object")
        header.pop("__metadata__", None)
        start, entries, spans = 8 + length, {}, []
        for name, entry in header.items():
            if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
                raise self._fail(f"tensor {name!r} has no known dtype ({entry!r:.80})")
            shape, offsets = entry.get("shape"), entry.get("data_offsets")
            if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
                    or not isinstance(offsets, list) or len(offsets) != 2
                    or not all(type(o) is int and o >= 0 for o in offsets)):
                raise self._fail(f"tensor {name!r} has a malformed shape or data_offsets")
            dtype = DTYPES[entry["dtype"]]
            numel = 1
            for d in shape:
                numel *= d
            if offsets[1] - offsets[0] != numel * dtype.itemsize:
                raise self._fail(f"tensor {name!r} of shape {shape} ({entry['dtype']}) spans "
                                 f"{offsets[1] - offsets[0]} bytes")
            spans.append((offsets[0], offsets[1], name))
            entries[name] = (dtype, tuple(shape), start + offsets[0], offsets[1] - offsets[0])
        end = 0
        for begin, stop, name in sorted(spans):  # the format: tensors tile the data region, in order
            if begin != end:
                raise self._fail(f"tensor {name!r} starts at {begin}, not where the previous one ends ({end})")
            end = stop
        if start + end != size:
            raise self._fail(f"the header describes {start + end} bytes, the file has {size}")
        return entries

    def read(self, name: str) -> torch.Tensor:
        dtype, shape, offset, nbytes = self.entries[name]
        tensor = torch.empty(shape, dtype=dtype)
        if nbytes >= _HUGE_PAGE:
            huge_pages(tensor)
        if nbytes:
            view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            done = 0
            while done < nbytes:
                got = os.preadv(self.fd, [view[done:]], offset + done)
                if got <= 0:
                    raise self._fail(f"tensor {name!r} ends past the end of the file")
                done += got
        info = os.fstat(self.fd)
        if (info.st_size, info.st_mtime_ns) != self.stamp:
            raise CheckpointError(f"{self.path} changed while it was being read (rewritten in place?); "
                                  "load it again once it is complete")
        return tensor

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)
            self.fd = None


def _read_torch_bin(path: Path) -> dict[str, torch.Tensor]:
    """A `pytorch_model.bin` read whole into memory, refused unless it is a flat dict of tensors. Not mapped: a
    mapped zip record is read with the declared size of its storage, so a record cut short would be read
    with its neighbours' bytes; read, each record's size is checked against its storage."""
    with open_regular(path, "checkpoint", UNLIMITED, CheckpointError) as (handle, _):
        try:
            state = torch.load(handle, map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"refused to load {path}: it is not a plain tensor checkpoint (the pickle asks to run code "
                f"or build objects; only tensors are accepted). Detail: {str(err).splitlines()[0]}"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                struct.error, zipfile.BadZipFile) as err:
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"corrupt or truncated checkpoint {path}: {detail}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return state


class LazyTensors(Mapping):
    """name -> tensor for a whole checkpoint; each safetensors tensor is read when first asked for and kept,
    or, once `prefetch` was given the order of use, read ahead by a few threads (reading is memory-bound
    copying out of the page cache, which several cores do faster than one)."""

    def __init__(self):
        self._where: dict[str, _SafetensorsFile | dict[str, torch.Tensor]] = {}
        self._loaded: dict[str, torch.Tensor] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._ahead = 0
        self._asked: set[str] = set()
        self.stamp: tuple[int, ...] | None = None

    def prefetch(self, keys: list[str]) -> None:
        """Read `keys` (safetensors tensors, in this order of use) in the background, at most
        PREFETCH_BYTES ahead of what has been asked for, so that memory stays that of the tensors in use."""
        self._queue.extend(k for k in dict.fromkeys(keys) if isinstance(self._where.get(k), _SafetensorsFile)
                           and k not in self._loaded)
        if self._queue and self._pool is None:
            workers = min(PREFETCH_THREADS, os.cpu_count() or 1)
            self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="triformers-read")
        self._submit()

    def _submit(self) -> None:
        while self._queue and (self._ahead < PREFETCH_BYTES or not self._pending):
            key = self._queue.popleft()
            if key in self._asked:  # already read where it was asked for
                continue
            source = self._where[key]
            self._pending[key] = self._pool.submit(source.read, key)
            self._ahead += source.entries[key][3]
        if not self._queue and not self._pending and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _take(self, key: str) -> torch.Tensor:
        future = self._pending.pop(key)
        self._ahead -= self._where[key].entries[key][3]
        try:
            return future.result()
        finally:
            self._submit()

    def add(self, key: str, source: _SafetensorsFile | dict[str, torch.Tensor]) -> None:
        self._where[key] = source

    def __getitem__(self, key: str) -> torch.Tensor:
        self._asked.add(key)
        if key not in self._loaded:
            source = self._where[key]
            if key in self._pending:
                self._loaded[key] = self._take(key)
            else:
                self._loaded[key] = source.read(key) if isinstance(source, _SafetensorsFile) else source[key]
        return self._loaded[key]

    def forget(self, key: str) -> None:
        """Drop the kept copy of a tensor whose values now live elsewhere (read again if asked for again)."""
        self._loaded.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where


def _open(path: Path) -> _SafetensorsFile | dict[str, torch.Tensor]:
    return _SafetensorsFile(path) if path.suffix == ".safetensors" else _read_torch_bin(path)


def _keys(source: _SafetensorsFile | dict[str, torch.Tensor]) -> list[str]:
    return list(source.entries if isinstance(source, _SafetensorsFile) else source)


def read_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors or `.bin` file (an adapter's), read whole through the guarded readers."""
    source = _open(Path(path))
    if isinstance(source, _SafetensorsFile):
        return {key: source.read(key) for key in _keys(source)}
    return source


def read_weights(folder: Path, stamp_of: str = "config.json", use_safetensors: bool | None = None
                 ) -> tuple[LazyTensors, dict[str, Path]]:
    """All tensors of a checkpoint folder (read on first use), and the file each came from (for error
    messages). With an index, each tensor comes from the shard its `weight_map` names; a tensor the map
    omits is taken from the one shard that holds it. `tensors.stamp` is the `identity` of the file
    `stamp_of` as it was while the weight files were opened (the same state of the folder), so that a
    caller can tell whether the config it read earlier belongs with these weights."""
    tensors, origin = LazyTensors(), {}
    with reading(folder) as view:
        paths, weight_map, index_file = _weight_files(view, use_safetensors)
        names = {view.path(s) if "/" not in s else Path(folder) / s: s for s in (weight_map or {}).values()}
        for path in paths:
            source = _open(path)
            for key in _keys(source):
                if weight_map is not None and key in weight_map and weight_map[key] != names[path]:
                    continue  # a stale copy: the index names another shard for this tensor
                if key in origin:
                    raise CheckpointError(f"{index_file}: tensor {key!r} is in both {origin[key].name} and "
                                          f"{path.name}, and 'weight_map' does not say which to use")
                tensors.add(key, source)
                origin[key] = path
        for key, shard in (weight_map or {}).items():
            if key not in origin:
                raise CheckpointError(f"{index_file}: 'weight_map' puts tensor {key!r} in {shard}, which lacks it")
        tensors.stamp = identity(view.path(stamp_of))
    return tensors, origin
