"""Shared fixtures: where the real test assets live, and tiny-model helpers.

Assets come from PyPI packages (see scripts/fetch_assets.sh); a test that needs a missing one
skips and says which, so a bare `pytest` still runs everything else.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
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


def free_port() -> int:
    """A TCP port nobody listens on, for a local process group."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def join_as_rank(rank: int, world_size: int, port: int) -> None:
    """In a spawned worker: the torchrun environment of `rank` on this machine, one thread."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def run_limited(code: str, *args: str, memory: int = 4 * 2**30, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter under an address-space limit of `memory` bytes and a time limit:
    for cases that, should they regress, would hang, abort or kill the process running them."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                           "RUST_BACKTRACE": "0"})
