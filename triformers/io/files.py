"""The one guarded reader and the one atomic writer every file of triformers goes through.

Reading: model folders come from strangers, so a file is read only if it is a regular file (a FIFO
would block forever, `/dev/zero` would never end) and no larger than a cap; JSON is parsed with a
nesting cap (Python's parser recurses: deep brackets are a RecursionError otherwise) and without
the non-standard `NaN` / `Infinity` literals JSON forbids. Every error names the file.

Writing: a file is written to a temporary sibling and renamed over its final name, so a reader (or a
process killed mid-write) sees the old file or the new one, never half of one; the file gets the
permissions of an ordinary file under the process' umask (mkstemp's own are 0600).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

MAX_JSON_BYTES = 64 * 2**20  # config, index and tokenizer_config files are kilobytes; tokenizer.json a few MB


def check_regular(path: Path, what: str, max_bytes: int, error: type[Exception] = ConfigError) -> int:
    """The size of `path` (links followed), after checking it is a regular file of at most `max_bytes`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file; refused")
    if info.st_size > max_bytes:
        raise error(f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} such a file may have; refused")
    return info.st_size


def read_text(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES,
              error: type[Exception] = ConfigError) -> str:
    """A UTF-8 text file, checked by `check_regular`."""
    path = Path(path)
    check_regular(path, what, max_bytes, error)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err}") from None
    if len(data) > max_bytes:  # grew after the check
        raise error(f"{what} {path} is larger than {max_bytes} bytes; refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"cannot read {what} {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str, where: str, error: type[Exception] = ConfigError) -> Any:
    """json.loads with errors naming `where`, NaN / Infinity refused, and nesting capped: the C parser
    checks Python's recursion limit at each level and raises RecursionError, turned into `error` here."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise error(f"malformed {where}: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise error(f"malformed {where}: JSON nested too deeply; refused") from None
    except ValueError as err:
        raise error(f"malformed {where}: {err}") from None


def read_json(path: str | os.PathLike, what: str = "JSON file", error: type[Exception] = ConfigError,
              max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a file, read through the guarded reader."""
    data = parse_json(read_text(path, what, max_bytes, error), f"{what} {path}", error)
    if not isinstance(data, dict):
        raise error(f"malformed {what} {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[str], None]) -> Path:
    """Write `content` (text, bytes, or a function that writes the temporary path it is given) to `path`
    through a temporary sibling and a rename; on any failure the temporary file is removed and `path`
    is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> Path:
    """`data` as indented JSON (strict: NaN refused), written atomically."""
    try:
        text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as err:
        raise ConfigError(f"cannot write {path}: {err}") from None
    return atomic_write(path, text)
