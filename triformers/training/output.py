"""Where a run writes: `output_dir` checked before training starts, so that a run that cannot save fails at once
with the folder named, not hours later at its first checkpoint with an OSError from deep inside a save.

- `check_output_dir` (from `TrainingArguments.validate`, no side effects): output_dir must not name an existing
  file, and the nearest folder that exists on its path must be one this process may write into (a read-only
  file system or missing permissions is refused here).
- `prepare_output_dir` (from the Trainer, on the main process): creates the folder, writes and removes a probe
  file in it (what a permission check cannot see, e.g. a quota), and compares the disk's free space with what one
  checkpoint (the model's export, its state and the optimizer's two moments) and the final export take.
A disk that fills during the run is still caught where each file is written (`checkpoints`, `io.publish`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from ..errors import TrainingError
from ..memory import describe

CHECKPOINT_COPIES = 4  # a checkpoint: the exported weights, the model state, AdamW's exp_avg and exp_avg_sq


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """A TrainingError when `output_dir` is a file, or its nearest existing folder cannot be written into."""
    path = Path(output_dir).expanduser()
    where = f"TrainingArguments: output_dir={str(output_dir)!r} (--out)"
    if path.exists() and not path.is_dir():
        raise TrainingError(f"{where} is an existing file, not a folder; name a folder (it is created if missing)")
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise TrainingError(f"{where} lies under {existing}, which is a file")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise TrainingError(f"{where}: {existing} is not writable (a read-only file system or permissions); choose "
                            "another folder")


def run_bytes(model: nn.Module, saves_checkpoints: bool) -> int:
    """Disk space a run needs at least: one checkpoint (when it saves them) and the final export."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return weights * ((CHECKPOINT_COPIES if saves_checkpoints else 0) + 1)


def prepare_output_dir(folder: Path, model: nn.Module, saves_checkpoints: bool) -> None:
    """Create `folder` and make sure a run can write there (see the module docstring); a TrainingError names it."""
    check_output_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".triformers-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise TrainingError(f"output_dir {folder} cannot be written into: {err.strerror or err}; free space or "
                            "choose another folder (--out)") from None
    free, needed = shutil.disk_usage(folder).free, run_bytes(model, saves_checkpoints)
    if free < needed:
        raise TrainingError(f"output_dir {folder}: its disk has {describe(free)} free, but a checkpoint and the "
                            f"final model take about {describe(needed)}; free space or choose another folder (--out)")
