"""GGUF files (llama.cpp's single-file format): the header parsed and checked, tensors read and dequantized.

A GGUF file is a header (magic `GGUF`, version, tensor and metadata counts), typed metadata key/values
(the model's hyper-parameters under llama.cpp's names, the tokenizer's vocabulary and merges, the chat
template), a table of tensors (name, dims fastest-first, ggml type, offset) and, at the next `general.alignment`
boundary, the tensor data (format: ggml's `docs/gguf.md`). Reference: the `gguf` package's `GGUFReader`
and llama.cpp's `gguf_init_from_file`, whose checks this reader makes.

The header is parsed here rather than by `gguf.GGUFReader`, for three reasons: `GGUFReader` memory-maps the
file (triformers reads every file into the process' own memory: see `io.weights`), it builds one NumPy view
per vocabulary string (seconds for a 50k-token vocabulary, where parsing the bytes takes a small fraction of
that), and on a malformed file it fails with whatever NumPy raises. Here the file goes through the guarded
reader (a regular file, at most `MAX_GGUF_BYTES`), every count is checked against the bytes that remain
before anything is allocated for it, every tensor must lie inside the file, aligned, without overlapping
another, and every error is a CheckpointError naming the file (and the key or tensor). Dequantization is the
`gguf` package's own (`gguf.quants.dequantize`), so values are exactly those of the reference.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .files import open_regular

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # v1 counted in 32 bits and is gone from the wild; v2 and v3 share one layout
MAX_GGUF_BYTES = 2**42  # far above the largest published single files (hundreds of GB)
MAX_HEADER_BYTES = 256 * 2**20  # metadata + tensor table; real vocabularies take a few MB
MAX_COUNT = 2**24  # tensors, metadata keys, array elements: far above any real file, and bounded by its size too
MAX_KEY_BYTES = 2**16 - 1  # the format's own limit on a key
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 2**40  # one tensor
MAX_NESTING = 4  # arrays of arrays
DEFAULT_ALIGNMENT = 32
_CHUNK = 4 * 2**20
# GGUF metadata value types (GGUFValueType): the fixed-size ones as struct formats; 8 string, 9 array
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
              8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
# ggml tensor types triformers dequantizes (each tested against gguf's reference dequantizer)
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                   "Q6_K")


def gguf_package():
    """The `gguf` package (llama.cpp's own Python reader), imported when a GGUF file is first read."""
    try:
        import gguf
    except ImportError:  # a dependency of triformers; missing only from a broken environment
        raise CheckpointError("reading GGUF files needs the gguf package: pip install gguf") from None
    return gguf


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the table: its shape in torch order (slowest dim first), ggml type, and bytes in the file."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int  # from the start of the file
    nbytes: int


class _Cursor:
    """Reads the header through the file descriptor in growing chunks, never past MAX_HEADER_BYTES."""

    def __init__(self, fd: int, size: int, path: Path):
        self.fd, self.size, self.path = fd, size, path
        self.data = b""
        self.pos = 0

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"corrupt or truncated GGUF file {self.path}: {what}")

    def need(self, count: int, what: str) -> None:
        end = self.pos + count
        if end > self.size:
            raise self.fail(f"{what} at byte {self.pos} needs {count} bytes, past the end of the file "
                            f"({self.size} bytes)")
        if end > MAX_HEADER_BYTES:
            raise self.fail(f"{what} at byte {self.pos}: the header would be larger than {MAX_HEADER_BYTES} bytes")
        if end > len(self.data):
            want = min(self.size, MAX_HEADER_BYTES, max(end, 2 * len(self.data), _CHUNK))
            more = os.pread(self.fd, want - len(self.data), len(self.data))
            self.data += more
            if end > len(self.data):
                raise self.fail(f"{what}: the file ended while it was read")

    def left(self) -> int:
        return self.size - self.pos

    def unpack(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        value = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value[0] if len(value) == 1 else value

    def count(self, what: str, least_bytes: int) -> int:
        """A uint64 count of items that each take at least `least_bytes`, checked against what remains."""
        value = self.unpack("Q", what)
        if value > MAX_COUNT or value * least_bytes > self.left():
            raise self.fail(f"{what} is {value}, more than the {self.left()} bytes left can hold")
        return value

    def string(self, what: str, limit: int = MAX_HEADER_BYTES) -> str:
        length = self.unpack("Q", f"the length of {what}")
        if length > limit:
            raise self.fail(f"{what} is {length} bytes long (at most {limit})")
        self.need(length, what)
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.fail(f"{what} is not UTF-8 ({err.reason} at byte {err.start})") from None

    def value(self, kind: int, what: str, depth: int = 0) -> Any:
        if kind in SCALARS:
            return self.unpack(SCALARS[kind], what)
        if kind == STRING:
            return self.string(what)
        if kind != ARRAY:
            raise self.fail(f"{what} has value type {kind}, which GGUF does not define")
        if depth >= MAX_NESTING:
            raise self.fail(f"{what} nests arrays more than {MAX_NESTING} deep")
        item = self.unpack("I", f"the element type of {what}")
        if item in SCALARS:
            width = struct.calcsize("<" + SCALARS[item])
            count = self.count(f"the length of {what}", width)
            self.need(count * width, what)
            dtype = np.dtype("<" + SCALARS[item]) if item != 7 else np.bool_
            values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).tolist()
            self.pos += count * width
            return values
        count = self.count(f"the length of {what}", 8 if item == STRING else 12)
        return [self.value(item, f"{what}[{i}]", depth + 1) for i in range(count)]


class GGUFFile:
    """A GGUF file, its header parsed and checked; `read(name)` reads and dequantizes one tensor.

    `metadata` maps each key to its value (Python scalars, strings, lists); `types` to its GGUF value type;
    `tensors` maps each tensor name to its `TensorInfo`, in file order. The file stays open (one descriptor),
    so a file renamed over or deleted meanwhile is still the file parsed; a file rewritten in place is noticed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open_regular(self.path, "GGUF file", MAX_GGUF_BYTES, CheckpointError) as (handle, info):
            self.fd = os.dup(handle.fileno())
        self.stamp = (info.st_size, info.st_mtime_ns)
        self.identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)  # as `publish.identity`
        try:
            self._parse(info.st_size)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    def _parse(self, size: int) -> None:
        cursor = _Cursor(self.fd, size, self.path)
        cursor.need(4, "the magic")
        if cursor.data[:4] != MAGIC:
            raise CheckpointError(f"{self.path} is not a GGUF file: it starts with {cursor.data[:4]!r}, not {MAGIC!r}")
        cursor.pos = 4
        version = cursor.unpack("I", "the version")
        if version not in VERSIONS:
            swapped = struct.unpack("<I", struct.pack(">I", version))[0]
            detail = " (a big-endian file, which triformers does not read)" if swapped in VERSIONS else ""
            raise CheckpointError(f"{self.path}: GGUF version {version}{detail} is not supported; "
                                  f"versions {', '.join(map(str, VERSIONS))} are")
        self.version = version
        tensor_count = cursor.count("the tensor count", 8 + 4 + 8 + 4 + 8)
        key_count = cursor.count("the metadata key count", 8 + 4 + 1)
        self.metadata: dict[str, Any] = {}
        self.types: dict[str, tuple[int, ...]] = {}
        for index in range(key_count):
            key = cursor.string(f"metadata key {index}", MAX_KEY_BYTES)
            if key in self.metadata:
                raise cursor.fail(f"metadata key {key!r} appears twice")
            kind = cursor.unpack("I", f"the value type of metadata key {key!r}")
            start = cursor.pos
            self.metadata[key] = cursor.value(kind, f"metadata key {key!r}")
            self.types[key] = (ARRAY, struct.unpack_from("<I", cursor.data, start)[0]) if kind == ARRAY else (kind,)
        self.alignment = self._alignment()
        entries = [self._tensor_entry(cursor, index) for index in range(tensor_count)]
        data_start = -(-cursor.pos // self.alignment) * self.alignment
        self.tensors = self._place(entries, data_start, size)

    def _alignment(self) -> int:
        if "general.alignment" not in self.metadata:
            return DEFAULT_ALIGNMENT
        value = self.metadata["general.alignment"]
        if self.types["general.alignment"] != (4,) or not 0 < value <= 2**20 or value & (value - 1):
            raise CheckpointError(f"{self.path}: metadata key 'general.alignment' must be a uint32 power of two "
                                  f"(at most 2**20), got {value!r:.60}")
        return value

    def _tensor_entry(self, cursor: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
        name = cursor.string(f"the name of tensor {index}", MAX_KEY_BYTES)
        dims = cursor.unpack("I", f"the dimension count of tensor {name!r}")
        if not 1 <= dims <= MAX_DIMS:
            raise cursor.fail(f"tensor {name!r} has {dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
        shape = cursor.unpack("Q" * dims, f"the dimensions of tensor {name!r}")
        shape = (shape,) if dims == 1 else tuple(shape)
        kind = cursor.unpack("I", f"the type of tensor {name!r}")
        offset = cursor.unpack("Q", f"the offset of tensor {name!r}")
        return name, tuple(reversed(shape)), kind, offset  # ggml lists the fastest dimension first

    def _place(self, entries: list, data_start: int, size: int) -> dict[str, TensorInfo]:
        sizes = gguf_package().GGML_QUANT_SIZES
        kinds = gguf_package().GGMLQuantizationType
        tensors: dict[str, TensorInfo] = {}
        for name, shape, kind, offset in entries:
            where = f"{self.path}: tensor {name!r}"
            if name in tensors:
                raise CheckpointError(f"{where} appears twice in the tensor table")
            if kind not in kinds._value2member_map_ or kinds(kind) not in sizes:
                raise CheckpointError(f"{where} has ggml type {kind}, which GGUF does not define; "
                                      f"supported: {', '.join(SUPPORTED_TYPES)}")
            type_name = kinds(kind).name
            block, block_bytes = sizes[kinds(kind)]
            elements = 1
            for dim in shape:
                elements *= dim
            if elements > MAX_ELEMENTS or any(dim == 0 for dim in shape):
                raise CheckpointError(f"{where} has shape {shape}: {elements} elements, refused "
                                      f"(between 1 and {MAX_ELEMENTS})")
            if shape[-1] % block:
                raise CheckpointError(f"{where} has rows of {shape[-1]} values, not a multiple of the "
                                      f"{type_name} block of {block}")
            nbytes = elements // block * block_bytes
            if offset % self.alignment:
                raise CheckpointError(f"{where} starts at data offset {offset}, not a multiple of the alignment "
                                      f"{self.alignment}")
            if data_start + offset + nbytes > size:
                raise CheckpointError(f"corrupt or truncated GGUF file {self.path}: tensor {name!r} ({type_name}, "
                                      f"shape {shape}) spans bytes {data_start + offset}.."
                                      f"{data_start + offset + nbytes}, past the end of the file ({size} bytes)")
            tensors[name] = TensorInfo(name, shape, kind, type_name, data_start + offset, nbytes)
        end = 0
        for info in sorted(tensors.values(), key=lambda t: t.offset):
            if info.offset < end:
                raise CheckpointError(f"corrupt GGUF file {self.path}: tensor {info.name!r} overlaps the one before it")
            end = info.offset + info.nbytes
        return tensors

    # -- tensors --------------------------------------------------------------------------------------------
    def check_types(self, names) -> None:
        """Refuse, before anything is read, a tensor of a type triformers does not dequantize."""
        for name in names:
            info = self.tensors[name]
            if info.type_name not in SUPPORTED_TYPES:
                raise CheckpointError(f"{self.path}: tensor {name!r} is stored as {info.type_name}, a type triformers "
                                      f"does not dequantize; supported: {', '.join(SUPPORTED_TYPES)}")

    def raw(self, name: str) -> np.ndarray:
        """The bytes of one tensor, read into private memory: (rows, bytes per row) as uint8."""
        info = self.tensors[name]
        data = np.empty(info.nbytes, dtype=np.uint8)
        view, done = memoryview(data), 0
        while done < info.nbytes:
            got = os.preadv(self.fd, [view[done:]], info.offset + done)
            if got <= 0:
                raise CheckpointError(f"corrupt or truncated GGUF file {self.path}: tensor {name!r} ends past the "
                                      "end of the file")
            done += got
        info_now = os.fstat(self.fd)
        if (info_now.st_size, info_now.st_mtime_ns) != self.stamp:
            raise CheckpointError(f"{self.path} changed while it was being read (rewritten in place?); "
                                  "load it again once it is complete")
        rows = info.nbytes // max(1, self._row_bytes(info))
        return data.reshape(rows, -1)

    def _row_bytes(self, info: TensorInfo) -> int:
        block, block_bytes = gguf_package().GGML_QUANT_SIZES[gguf_package().GGMLQuantizationType(info.ggml_type)]
        return info.shape[-1] // block * block_bytes

    def read(self, name: str) -> torch.Tensor:
        """One tensor dequantized to float32 by `gguf.quants.dequantize`, in torch's dimension order."""
        self.check_types([name])
        info = self.tensors[name]
        gguf = gguf_package()
        values = gguf.quants.dequantize(self.raw(name), gguf.GGMLQuantizationType(info.ggml_type))
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(info.shape)
        if not values.flags.writeable:  # F32 comes back as a view of the (private) bytes read
            values = values.copy()
        return torch.from_numpy(values)

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)
            self.fd = None
