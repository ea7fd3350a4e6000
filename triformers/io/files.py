"""The one guarded reader and the one atomic writer every file of triformers goes through.

Reading: model folders, data files and resume files come from strangers, so a file is opened without
blocking (`O_NONBLOCK`: opening a FIFO would otherwise wait forever for a writer), checked on the open
descriptor to be a regular file (not a FIFO, a device such as `/dev/zero`, or a folder; checking the
descriptor rather than the name leaves no window for the name to be swapped) and no larger than a cap,
and read to its end through that descriptor. JSON is parsed with a nesting cap (Python's parser
recurses: deep brackets are a RecursionError otherwise), without the non-standard `NaN` / `Infinity`
literals JSON forbids, and without numbers that overflow to infinity (`1e400`). Every error names
the file.

Writing: a file is written to a temporary sibling and renamed over its final name, so a reader (or a
process killed mid-write) sees the old file or the new one, never half of one; the file gets the
permissions of an ordinary file under the process' umask (mkstemp's own are 0600). A set of files
that must change together (weights + config, a tokenizer's three files) is published with
`triformers.io.publish`.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ..errors import ConfigError

MAX_JSON_BYTES = 64 * 2**20  # config, index and tokenizer_config files are kilobytes; tokenizer.json a few MB
MAX_VOCAB_BYTES = 256 * 2**20  # vocab.txt / vocab.json / merges.txt / spiece.model: a few MB in real models
UNLIMITED = 2**62  # files whose size the reader streams or checks itself (weights, trainer state, corpora)


@contextmanager
def open_regular(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES,
                 error: type[Exception] = ConfigError) -> Iterator[tuple[IO[bytes], os.stat_result]]:
    """`path` opened for binary reading (links followed), with its stat, once the open descriptor is
    known to be a regular file of at most `max_bytes`."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file; refused")
        if info.st_size > max_bytes:
            raise error(f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} such a file may have; "
                        "refused")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle, info


def check_regular(path: str | os.PathLike, what: str, max_bytes: int,
                  error: type[Exception] = ConfigError) -> int:
    """The size of `path` after the checks of `open_regular`."""
    with open_regular(path, what, max_bytes, error) as (_, info):
        return info.st_size


def read_lines(handle: IO[bytes], what: str, max_line: int, error: type[Exception] = ConfigError
               ) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline) of a binary file, each line at most `max_line` bytes, so
    that a file without newlines (a sparse terabyte) is never read into memory whole."""
    number = 0
    while True:
        line = handle.readline(max_line + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line:
            raise error(f"{what}: line {number} is longer than {max_line} bytes; refused")
        yield number, line.rstrip(b"\n").removesuffix(b"\r")


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES,
               error: type[Exception] = ConfigError) -> bytes:
    """A whole file, checked by `open_regular` (and cut off at the cap should it grow meanwhile)."""
    with open_regular(path, what, max_bytes, error) as (handle, _):
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(data) > max_bytes:  # grew after the check
        raise error(f"{what} {path} is larger than {max_bytes} bytes; refused")
    return data


def decode_utf8(data: bytes, what: str, error: type[Exception] = ConfigError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"cannot read {what}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_text(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES,
              error: type[Exception] = ConfigError) -> str:
    """A UTF-8 text file, read by `read_bytes`."""
    return decode_utf8(read_bytes(path, what, max_bytes, error), f"{what} {path}", error)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def parse_json(text: str | bytes, where: str, error: type[Exception] = ConfigError) -> Any:
    """json.loads with errors naming `where`, NaN / Infinity / overflowing numbers refused, and nesting
    capped: the C parser checks Python's recursion limit at each level and raises RecursionError, turned
    into `error` here. Integers longer than Python's digit limit are refused the same way."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise error(f"malformed {where}: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise error(f"malformed {where}: JSON nested too deeply; refused") from None
    except UnicodeDecodeError as err:
        raise error(f"malformed {where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        raise error(f"malformed {where}: {err}") from None


def read_json(path: str | os.PathLike, what: str = "JSON file", error: type[Exception] = ConfigError,
              max_bytes: int = MAX_JSON_BYTES, kind: type = dict) -> Any:
    """A JSON object (or, with `kind`, another JSON type) from a file, read through the guarded reader."""
    data = parse_json(read_text(path, what, max_bytes, error), f"{what} {path}", error)
    if not isinstance(data, kind):
        expected = "a JSON object" if kind is dict else f"a JSON {kind.__name__}"
        raise error(f"malformed {what} {path}: expected {expected}, got {type(data).__name__}")
    return data


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so that `json.dumps` writes strict JSON
    (`null`) rather than the `NaN` / `Infinity` that strict parsers reject."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def file_mode() -> int:
    """The permissions of an ordinary new file under the process' umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[str], None]) -> Path:
    """Write `content` (text, bytes, or a function that writes the temporary path it is given) to `path`
    through a temporary sibling, flushed to disk, and a rename; on any failure the temporary file is
    removed and `path` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
            fsync_path(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk; folders on systems that refuse are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> Path:
    """`data` as indented JSON (strict: NaN refused), written atomically."""
    try:
        text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as err:
        raise ConfigError(f"cannot write {path}: {err}") from None
    return atomic_write(path, text)
