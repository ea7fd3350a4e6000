"""Trainer checkpoints on disk: atomic checkpoint folders, found and pruned by step.

A checkpoint is `out/checkpoints/checkpoint-NNNNNNN/` holding `trainer_state.pt` (model and optimizer
state, step, every rank's RNG states; tensors and plain Python values only, so it is read back with
`torch.load(weights_only=True)` and never unpickles arbitrary objects) next to a Hugging Face export
of the model and tokenizer. It is written under a temporary name and renamed, so a crash mid-write
never leaves a half checkpoint under a real name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def checkpoint_paths(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under output_dir/checkpoints, oldest first."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT.match(p.name) and (p / "trainer_state.pt").is_file()]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    paths = checkpoint_paths(output_dir)
    return paths[-1] if paths else None


def write_checkpoint(output_dir: str | os.PathLike, step: int, state: dict[str, Any],
                     export: Callable[[Path], None], keep: int | None) -> Path:
    """Write checkpoint-<step> through a temporary folder and a rename; keep the newest `keep` (None: all)."""
    folder = Path(output_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"checkpoint-{step:07d}"
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    for stale in [*folder.glob(".tmp-checkpoint-*"), *folder.glob(".old-checkpoint-*")]:
        shutil.rmtree(stale)  # half-written by a process killed while saving (rank 0 is the only writer)
    tmp.mkdir()
    try:
        torch.save(state, tmp / "trainer_state.pt")
        export(tmp)
        if final.exists():  # a rename cannot replace a non-empty folder: move the old one out of the way first
            stale = folder / f".old-{final.name}-{os.getpid()}"
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_paths(output_dir)[:-keep] if keep is not None else []:
        shutil.rmtree(old)
    return final
