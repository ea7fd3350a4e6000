"""The metrics log (`metrics.jsonl`, one JSON object per logged step) and the loss-curve PNG drawn from it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..io.files import atomic_write

logger = logging.getLogger("triformers")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On (re)start drop lines past `step`, which an interrupted run logged after its last checkpoint."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write(path, "".join(line + "\n" for line in lines))


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
