"""Publishing a set of files into a folder as one step, and reading a folder as one consistent set.

A save writes several files that only make sense together (config.json + weights, the tokenizer's
three files, a trainer's export of both), often into a folder that holds other things too (a trainer's
output folder holds `checkpoints/` and `metrics.jsonl`; `model.save_pretrained(d); tok.save_pretrained(d)`
share `d`; a user's folder holds their files). So the unit published is the save's own set of files,
not the folder: swapping the whole folder would have to carry everything else across, and a reader
that opens files by name would still see two folders.

Writer, `with publish(folder, stale=...) as staging:`
  1. `folder/.triformers-staging-<random>/` is created; a lock on its `.writer` file says its writer lives;
  2. the caller writes the new files into `staging`;
  3. they are flushed to disk; then, holding an exclusive lock on `folder`, the writer renames the
     manifest `.manifest.json` (the names to move in, the stale names to delete) into the staging folder:
     this one rename is the commit;
  4. the files are renamed into `folder`, the stale names removed (old shards and indexes never outlive
     a save), the staging folder deleted, and the lock released.
A process killed before 3 leaves the old set untouched (its staging folder is swept by the next writer);
killed during 4, the committed manifest says how to finish, the next writer finishes it, and readers
meanwhile read the new set through it.

Reader, `with reading(folder) as view:` holds a shared lock on `folder` while it opens the files it
needs, so step 4 never runs in the middle of a read; `view.path(name)` is where the file of the newest
committed set lives. Locks are advisory `flock`s: where a file system has none, reading and writing go
on without them (a kill is still safe; only a reader racing a writer is then unprotected).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from safetensors import SafetensorError

from ..errors import CheckpointError

try:
    import fcntl
    SHARED, EXCLUSIVE = fcntl.LOCK_SH, fcntl.LOCK_EX
except ImportError:  # no flock (Windows): publishing stays kill-safe, readers racing writers are not locked out
    fcntl = None
    SHARED, EXCLUSIVE = 1, 2
from .files import atomic_write, file_mode, fsync_path, parse_json, read_bytes

STAGING_PREFIX = ".triformers-staging-"
MANIFEST = ".manifest.json"
WRITER = ".writer"
_ABANDONED_S = 600  # a staging folder whose writer never took its lock, left this long, is a crash's leftover


@contextmanager
def _locked(path: Path, mode: int, blocking: bool = True) -> Iterator[bool]:
    """An flock on `path` (a folder or a file) for the block; yields False if it could not be taken
    without waiting (when `blocking` is False) and True otherwise, also where locks are unsupported."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        yield True  # unreadable (execute-only) folder: go on without a lock
        return
    try:
        try:
            fcntl.flock(fd, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:
            pass  # no locks on this file system
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _committed(staging: Path) -> dict | None:
    """The manifest of a committed staging folder, or None if it was never committed."""
    try:
        manifest = parse_json(read_bytes(staging / MANIFEST, "publish manifest", error=CheckpointError),
                              f"publish manifest {staging / MANIFEST}", CheckpointError)
    except CheckpointError:
        return None
    names = [*manifest.get("files", []), *manifest.get("remove", [])] if isinstance(manifest, dict) else [None]
    if not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..") for n in names):
        return None
    return manifest


def _stagings(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir())
    except OSError:
        return []


def _writer_alive(staging: Path) -> bool:
    lock = staging / WRITER
    if not lock.exists():
        try:
            return time.time() - staging.stat().st_mtime < _ABANDONED_S
        except OSError:
            return False
    with _locked(lock, EXCLUSIVE, blocking=False) as free:
        return not free


def _roll_forward(folder: Path, staging: Path, manifest: dict) -> None:
    """Finish a committed publication: move its files in, delete its stale names, drop the staging folder."""
    for name in manifest["files"]:
        if (staging / name).exists():
            os.replace(staging / name, folder / name)
    for name in manifest["remove"]:
        target = folder / name
        if target.is_file() or target.is_symlink():
            target.unlink()
    fsync_path(folder)
    shutil.rmtree(staging, ignore_errors=True)


def _recover(folder: Path) -> None:
    """Under the folder's exclusive lock: finish the committed publications of dead writers (oldest first)
    and sweep their uncommitted staging folders."""
    for staging in _stagings(folder):
        if _writer_alive(staging):
            continue
        manifest = _committed(staging)
        if manifest is not None:
            _roll_forward(folder, staging, manifest)
        else:
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A fresh staging folder inside `folder`, locked by its writer for the block, removed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        lock = os.open(staging / WRITER, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:
                pass  # no locks on this file system
            yield staging
        finally:
            os.close(lock)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(folder: Path, staging: Path, stale: Callable[[Path], Iterable[str]] | None,
            error: type[Exception]) -> None:
    """Flush the staged files, then commit and move them in under the folder's exclusive lock."""
    files = sorted(p.name for p in staging.iterdir() if p.name not in (WRITER, MANIFEST)
                   and not p.name.startswith(STAGING_PREFIX))
    if any(not (staging / name).is_file() or (staging / name).is_symlink() for name in files):
        raise error(f"a save into {folder} may only write plain files, got {files}")
    mode = file_mode()
    for name in files:
        os.chmod(staging / name, mode)  # an ordinary file's permissions, whoever wrote it
        fsync_path(staging / name)
    with _locked(folder, EXCLUSIVE):
        _recover(folder)
        remove = sorted(set(stale(folder) if stale else ()) - set(files))
        manifest = {"format": 1, "files": files, "remove": remove}
        atomic_write(staging / MANIFEST, json.dumps(manifest))
        fsync_path(staging)
        _roll_forward(folder, staging, manifest)


@contextmanager
def publish(folder: str | os.PathLike, stale: Callable[[Path], Iterable[str]] | None = None,
            error: type[Exception] = CheckpointError) -> Iterator[Path]:
    """Yield a fresh staging folder; when the block ends without an error, the plain files written into it
    replace their namesakes in `folder` as one set, and the names `stale(folder)` lists that the set does not
    contain are removed with it. On an error nothing in `folder` changes; a failure to write (a read-only
    folder, a full disk) is an `error` naming the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise error(f"cannot save into {folder}: it is a file, not a folder")
    try:
        with _staging(folder) as staging:
            yield staging
            _commit(folder, staging, stale, error)
    except (OSError, SafetensorError) as err:
        raise error(f"cannot save into {folder}: {err}") from None


class FolderView:
    """Where each file of a folder's newest committed set lives (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._moved: dict[str, Path] = {}
        self._removed: set[str] = set()
        for staging in _stagings(folder):  # only a dead writer's, or one on a file system without locks
            manifest = _committed(staging)
            if manifest is None:
                continue
            for name in manifest["files"]:
                self._moved[name] = staging / name
                self._removed.discard(name)
            for name in manifest["remove"]:
                self._moved.pop(name, None)
                self._removed.add(name)

    def path(self, name: str) -> Path:
        """The file `name` of the folder (which may not exist)."""
        if name in self._removed:
            return self.folder / STAGING_PREFIX / "removed" / name  # a path that exists nowhere
        moved = self._moved.get(name)
        if moved is not None and moved.exists():
            return moved
        return self.folder / name


@contextmanager
def reading(folder: str | os.PathLike) -> Iterator[FolderView]:
    """A consistent view of `folder` for the block: no publication changes it while the lock is held."""
    folder = Path(folder)
    with _locked(folder, SHARED):
        yield FolderView(folder)


def identity(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or rewritten (device, inode, size, modification time)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns
