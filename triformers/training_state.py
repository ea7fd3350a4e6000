"""What the trainer keeps on disk: atomic checkpoint folders, RNG states, and the loss-curve plot.

A checkpoint is `out/checkpoints/checkpoint-NNNNNNN/` holding `trainer_state.pt` (model and optimizer
state, step, every rank's RNG states; tensors and plain Python values only, so it is read back with
`torch.load(weights_only=True)` and never unpickles arbitrary objects) next to a Hugging Face export
of the model and tokenizer. It is written under a temporary name and renamed, so a crash mid-write
never leaves a half checkpoint under a real name.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

logger = logging.getLogger("triformers")
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
                     export: Callable[[Path], None], keep: int) -> Path:
    """Write checkpoint-<step> through a temporary folder and a rename; keep the newest `keep`."""
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
    for old in checkpoint_paths(output_dir)[:-keep]:
        shutil.rmtree(old)
    return final


# ---- RNG states as tensors and plain values ----------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states, in types weights_only loading accepts."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- metrics -------------------------------------------------------------------------------------------
def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On (re)start drop lines past `step`, which an interrupted run logged after its last checkpoint."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


# ---- the loss curve ------------------------------------------------------------------------------------
def plot_metrics(metrics: Path, png: Path) -> bool:
    """Training and held-out loss against the step, as a PNG; False (and a log line) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on servers
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'triformers[plot]'): no loss curve written")
        return False
    if not metrics.is_file():
        return False
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held_out = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    figure, axes = plt.subplots(figsize=(7, 4))
    if train:
        axes.plot([s for s, _ in train], [v for _, v in train], label="train loss", linewidth=1)
    if held_out:
        axes.plot([s for s, _ in held_out], [v for _, v in held_out], "o-", label="held-out loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return True
