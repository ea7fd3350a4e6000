"""The metrics log (`metrics.jsonl`, one JSON object per logged step) and the loss-curve PNG drawn from it.

The log is appended to as training goes, so a kill can cut its last line short: reading it keeps every
well-formed record (a JSON object with an integer `step`) and skips, with a warning naming the file
and line, what is not, so that a torn line never stops a `--resume`. Records are strict JSON (a
non-finite number is written as null).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from ..io.files import atomic_write, open_regular, parse_json, strict_json

logger = logging.getLogger("triformers")
MAX_LOG_BYTES = 2**30  # a log line per step: a billion bytes is millions of steps
MAX_LINE_BYTES = 2**20


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(strict_json(record), allow_nan=False) + "\n")


def _record(line: bytes) -> dict[str, Any] | None:
    """One log line as a record, or None if it is not a JSON object with an integer step."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        record = parse_json(line, "metrics line", TrainingError)
    except TrainingError:
        return None
    return record if isinstance(record, dict) and type(record.get("step")) is int else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The well-formed records of a metrics log, in order (see the module docstring); lines are read at most
    MAX_LINE_BYTES at a time, so a log without newlines is never held whole."""
    records, skipped = [], []
    with open_regular(path, "metrics log", MAX_LOG_BYTES, TrainingError) as (handle, _):
        for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
            if line.strip():
                record = _record(line)
                (records if record is not None else skipped).append(record if record is not None else number)
    if skipped:
        logger.warning("%s: skipped %d malformed line(s) (%s), such as a last line cut short by a kill", path,
                       len(skipped), ", ".join(map(str, skipped[:5])))
    return records


def truncate_metrics(path: Path, step: int) -> None:
    """On (re)start drop lines past `step`, which an interrupted run logged after its last checkpoint, and
    lines a kill cut short."""
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    atomic_write(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))


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
    records = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
    held_out = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
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
