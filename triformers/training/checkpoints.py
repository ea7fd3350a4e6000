"""Trainer checkpoints on disk: atomic checkpoint folders, found, pruned and read back by step.

A checkpoint is `out/checkpoints/checkpoint-NNNNNNN/` holding `trainer_state.pt` (model and optimizer
state, step, every rank's RNG states; tensors and plain Python values only, so it is read back with
`torch.load(weights_only=True)` and never unpickles arbitrary objects) next to a Hugging Face export
of the model and tokenizer. It is written under a temporary name and then put in place in one step:
renamed when new, or, when a checkpoint of that step exists (a finished run re-run with `--resume`),
swapped with it atomically (Linux `renameat2(RENAME_EXCHANGE)`), so at every moment the step has one
complete checkpoint. Where the system cannot swap, the old one is moved aside first, and a sweep puts
a moved-aside checkpoint back if a kill came before the new one was in place.
The final export into the output folder itself is published as one set (`io.publish`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import TrainingError
from ..io.files import UNLIMITED, open_regular
from ..io.publish import publish
from ..io.weights import weight_names

CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
_MOVED_ASIDE = re.compile(r"\.old-(checkpoint-\d+)-\d+$")
STATE_KEYS = {"step": int, "tokens": int, "world_size": int, "global_batch": int, "model": dict,
              "optimizer": dict, "rng": list}


def _restore_moved_aside(folder: Path) -> None:
    """Put back a checkpoint moved aside by a writer killed before its replacement was in place."""
    for aside in folder.glob(".old-checkpoint-*"):
        match = _MOVED_ASIDE.match(aside.name)
        home = folder / match.group(1) if match else None
        if home is not None and not home.exists() and (aside / "trainer_state.pt").is_file():
            os.replace(aside, home)


def checkpoint_paths(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under output_dir/checkpoints, oldest first."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    _restore_moved_aside(folder)
    found = [p for p in folder.iterdir() if CHECKPOINT.match(p.name) and (p / "trainer_state.pt").is_file()]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    paths = checkpoint_paths(output_dir)
    return paths[-1] if paths else None


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2` with RENAME_EXCHANGE); False where the
    C library, kernel or file system has no such operation."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _sweep(folder: Path) -> None:
    """Remove what killed writers left: temporary folders, and moved-aside checkpoints whose replacement
    is in place; a moved-aside checkpoint whose step has no checkpoint any more is put back."""
    for stale in folder.glob(".tmp-checkpoint-*"):
        shutil.rmtree(stale)  # rank 0 is the only writer
    _restore_moved_aside(folder)
    for aside in folder.glob(".old-checkpoint-*"):
        shutil.rmtree(aside)  # its replacement is in place


def write_checkpoint(output_dir: str | os.PathLike, step: int, state: dict[str, Any],
                     export: Callable[[Path], None], keep: int | None) -> Path:
    """Write checkpoint-<step> through a temporary folder put in place in one step; keep the newest `keep`
    (None: all)."""
    folder = Path(output_dir) / "checkpoints"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainingError(f"cannot write checkpoints into {folder}: {err}") from None
    final = folder / f"checkpoint-{step:07d}"
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    _sweep(folder)
    tmp.mkdir()
    try:
        try:
            torch.save(state, tmp / "trainer_state.pt")
        except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
            raise TrainingError(f"cannot write checkpoint {final} (is the disk full or read-only?): "
                                f"{str(err).splitlines()[0]}") from None
        export(tmp)
        if not final.exists():
            os.replace(tmp, final)
        elif exchange(tmp, final):
            shutil.rmtree(tmp)  # now the old checkpoint
        else:  # a rename cannot replace a non-empty folder: move the old one aside (the sweep restores it)
            aside = folder / f".old-{final.name}-{os.getpid()}"
            os.replace(final, aside)
            os.replace(tmp, final)
            shutil.rmtree(aside)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_paths(output_dir)[:-keep] if keep is not None else []:
        shutil.rmtree(old)
    return final


def export_into(output_dir: str | os.PathLike, export: Callable[[Path], None]) -> None:
    """Run `export(folder)` and publish what it writes into `output_dir` as one set, removing weight files
    of an earlier export that the new set does not replace (the checkpoints and logs there stay)."""
    with publish(output_dir, stale=weight_names, error=TrainingError) as staging:
        export(staging)


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer_state.pt, read as tensors and plain values only and checked for the fields a
    resume needs; every failure is a TrainingError naming the file."""
    with open_regular(path, "trainer state", UNLIMITED, TrainingError) as (handle, _):
        try:
            state = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError (refused objects), truncated zip records, bad bytes
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TrainingError(f"resume_from_checkpoint: {path} is corrupt, truncated or not a trainer state: "
                                f"{detail[:300]}") from None
    if not isinstance(state, dict):
        raise TrainingError(f"resume_from_checkpoint: {path} holds a {type(state).__name__}, not a trainer state")
    for key, kind in STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TrainingError(f"resume_from_checkpoint: {path}: {key!r} is missing or not a {kind.__name__} "
                                f"({value!r:.80})")
    if state["world_size"] < 1 or state["global_batch"] < 1 or len(state["rng"]) != state["world_size"]:
        raise TrainingError(f"resume_from_checkpoint: {path}: world_size {state['world_size']}, global_batch "
                            f"{state['global_batch']} and {len(state['rng'])} RNG states do not fit together")
    return state


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint holds of the model: its state_dict, or, for a model with adapters, the adapters alone
    (its `checkpoint_state_dict`), as peft's Trainer integration checkpoints only what trains."""
    own = getattr(model, "checkpoint_state_dict", None)
    return own() if callable(own) else model.state_dict()


def load_model_state(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """The inverse of `model_state`, strict: every tensor of the model's checkpoint state, and no other."""
    own = getattr(model, "load_checkpoint_state_dict", None)
    (own if callable(own) else model.load_state_dict)(state)


@contextmanager
def resuming(path: Path) -> Iterator[None]:
    """Errors while putting a checkpoint's state into this run's model and optimizer, as a TrainingError:
    a checkpoint of another model shape (`--hidden-size`, `--layers`, ...) or another optimizer setup."""
    try:
        yield
    except TrainingError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        detail = " ".join(str(err).split())[:400]
        raise TrainingError(f"resume_from_checkpoint: {path} does not fit this run (resume with the model and "
                            "optimizer options it was trained with: --hidden-size, --layers, --heads, ...): "
                            f"{detail}") from None
