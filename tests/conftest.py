"""Shared fixtures: where the real test assets live, and tiny-model helpers.

Assets come from PyPI packages (see scripts/fetch_assets.sh); a test that needs a missing one
skips and says which, so a bare `pytest` still runs everything else.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("TRIFORMERS_ASSETS", ROOT / ".assets"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def asset(relative: str) -> Path:
    """Path of a fetched test asset, or skip the test naming what is missing."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"test asset {path} is missing: run `bash scripts/fetch_assets.sh .assets`")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run tiny models: one thread is fastest, above all when other jobs share the cores (OpenMP
    threads spin-waiting for a busy core made a 50k-parameter training step take seconds)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
