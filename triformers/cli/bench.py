"""`triformers bench`: the side-by-side benchmark suite of a source checkout (`python -m bench`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ..errors import TriformersError
from .registry import Command, register


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer reps, no biggest models")
    parser.add_argument("--smoke", action="store_true", help="self-test in seconds; its figures mean nothing")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="substring filter (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("--json", metavar="PATH", help="results file (default bench/results/latest.json)")
    parser.add_argument("--reps", type=int, help="timed repetitions per contender")


def _run_bench(args: argparse.Namespace) -> int:
    """Run the side-by-side suite of the source tree (bench/ is not part of the installed package)."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / "bench" / "__main__.py").is_file():
        raise TriformersError(f"the benchmark suite lives in bench/ of a triformers clone; none beside {root}")
    argv = [sys.executable, "-m", "bench", *(["--quick"] if args.quick else []), *(["--smoke"] if args.smoke else []),
            *(["--list"] if args.list else []), *[f"--case={c}" for c in args.case],
            *([f"--json={args.json}"] if args.json else []), *([f"--reps={args.reps}"] if args.reps else [])]
    return subprocess.call(argv, cwd=root)


register(Command("bench", "benchmark triformers against transformers side by side (python -m bench)",
                 _bench_arguments, _run_bench))
