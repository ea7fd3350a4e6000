"""`python -m bench`: every case in its own subprocess, one table, JSON and a chart.

    python -m bench --list
    python -m bench --quick                     # a few minutes; fewer reps and tokens, no BLOOM-560m
    python -m bench --case tiny --case bert     # substring filters
    python -m bench --json out.json --reps 7

Each case runs in a fresh `python -m bench --worker NAME` process, so memory, threads and allocator
state never leak from one case into the next; the worker writes its rows as JSON for this process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
FLOORS = "@floors"  # pseudo-case: the machine floors measured once at the start of the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions and new tokens; skip the biggest models")
    p.add_argument("--smoke", action="store_true",
                   help="self-test in seconds (tiny floors, 4 new tokens, 1 rep); its figures mean nothing")
    p.add_argument("--case", action="append", default=[], metavar="NAME",
                   help="run only cases whose name contains NAME (repeatable)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help=f"results (default {DEFAULT_JSON})")
    p.add_argument("--chart", type=Path, default=None, metavar="PATH", help="PNG chart (default: beside --json)")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every case (default 2)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per contender (default 5, quick 2)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per case (default 3600, quick 900)")
    p.add_argument("--verbose", "-v", action="store_true", help="show each case's progress as it runs")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def selected_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    from .cases import all_cases
    cases = all_cases()
    if args.case:
        cases = [c for c in cases if any(f in c["name"] for f in args.case)]
    elif args.quick:
        cases = [c for c in cases if c["quick"]]
    if args.quick and args.case:  # an explicit filter still honours --quick's model limits
        cases = [c for c in cases if c["quick"]] or cases
    return cases


# -- worker side -------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> int:
    from .harness import Settings, Skip, measure_floors, setup_process, skipped_row
    setup_process(args.threads)
    settings = Settings.make(args.quick, args.threads, args.reps, args.smoke)
    if args.worker == FLOORS:
        result: Any = measure_floors(settings.quick, settings.smoke)
    else:
        from .cases import find, runner
        case = find(args.worker)
        try:
            rows = runner(case)(settings, **case["params"])
        except Skip as skip:
            rows = [skipped_row(case["name"], case["name"], str(skip))]
        result = [row.to_dict() for row in rows]
    args.result_file.write_text(json.dumps(result))
    return 0


def run_worker(name: str, args: argparse.Namespace, timeout: float) -> tuple[Any, str | None, float]:
    """(result, error text or None, seconds) of one case run in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="triformers-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", "--worker", name, "--result-file", str(result_file),
               "--threads", str(args.threads)]
        cmd += (["--quick"] if args.quick else []) + (["--smoke"] if args.smoke else [])
        cmd += ["--reps", str(args.reps)] if args.reps else []
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=20)
        for line in proc.stdout:  # progress lines; shown with --verbose, the tail kept for errors
            tail.append(line.rstrip())
            if args.verbose:
                print("   | " + line, end="", flush=True)
        returncode = proc.wait()
        timer.cancel()
        seconds = time.perf_counter() - start
        if seconds >= timeout:
            return None, f"timed out after {timeout:.0f} s", seconds
        if returncode != 0 or not result_file.exists():
            lines = [x for x in tail if x.strip()]
            return None, (lines[-1] if lines else f"exit code {returncode}") + "\n" + "\n".join(tail), seconds
        return json.loads(result_file.read_text()), None, seconds


# -- parent side -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.quick = args.quick or args.smoke
    if args.worker:
        return worker(args)
    from . import report
    from .harness import machine_info, skipped_row
    cases = selected_cases(args)
    if args.list:
        for case in cases:
            print(f"{case['name']:<34} {'quick and full' if case['quick'] else 'full only'}")
        return 0
    if not cases:
        print(f"no case matches {args.case}; see --list", file=sys.stderr)
        return 2
    timeout = args.timeout or (900 if args.quick else 3600)
    machine = machine_info(args.threads)
    print(report.machine_line(machine), flush=True)
    floors, error, _ = run_worker(FLOORS, args, timeout)
    if error:
        print(f"floor measurement failed: {error}", file=sys.stderr)
        floors = {}
    else:
        print(report.floors_line(floors), flush=True)
    rows: list[dict[str, Any]] = []
    errors = 0
    started = time.perf_counter()
    for case in cases:
        print(f"-- {case['name']} ...", end=" ", flush=True)
        result, error, seconds = run_worker(case["name"], args, timeout)
        if error:
            errors += 1
            print(f"FAILED ({seconds:.0f} s)" + ("" if args.verbose else "\n" + error), flush=True)
            result = [dict(skipped_row(case["name"], case["name"], f"error: {error.splitlines()[0]}").to_dict(),
                           error=error)]
        else:
            print(f"{seconds:.0f} s", flush=True)
        for row in result:
            print("   " + report.row_line(row), flush=True)
        rows.extend(result)
    data = {"machine": machine, "floors": floors, "quick": args.quick, "smoke": args.smoke, "reps": args.reps,
            "command": " ".join(["python -m bench"] + (argv if argv is not None else sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.perf_counter() - started, 1),
            "rows": rows}
    print()
    print(report.markdown(data))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1))
    print(f"\nresults: {args.json}")
    if not args.no_chart:
        print(report.chart(data, args.chart or args.json.with_suffix(".png")))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
