"""Timing and machine floors, shared by every case.

- `interleaved`: warm-up, then repetitions that alternate the order of the contenders (A B, B A, ...)
  so that drift on a shared VM hits both alike; medians are reported, all samples kept.
- `measure_floors`: the machine's limits measured in the same process as the case: fp32 (and bf16)
  GEMM FLOP/s of a large matmul, and read bandwidth (sum of a 1 GiB tensor) and copy bandwidth.
- `speed_row`: one table row; the speed-up is always computed from the two medians of this run.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch


class Skip(Exception):
    """A case that cannot run here (a dialect or feature not there yet); the message says why."""


@dataclass
class Settings:
    quick: bool = False
    threads: int = 2
    reps: int = 5  # timed repetitions per contender (after warm-up)
    warmup: int = 1
    smoke: bool = False  # a seconds-long self-test of the machinery: few tokens, small floors, 1 rep

    @classmethod
    def make(cls, quick: bool, threads: int = 2, reps: int | None = None, smoke: bool = False) -> Settings:
        return cls(quick=quick or smoke, threads=threads, reps=reps or (1 if smoke else 2 if quick else 5), smoke=smoke)


def setup_process(threads: int) -> None:
    """Same thread state for both libraries: `threads` intra-op threads, one inter-op thread."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


# -- machine ---------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return [x for x in flags if x.startswith(("avx512", "amx", "avx2", "fma"))]
    except OSError:
        pass
    return []


def machine_info(threads: int) -> dict[str, Any]:
    try:
        import transformers
        hf_version = transformers.__version__
    except ImportError:
        hf_version = None
    import triformers
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": threads, "cpu_flags": cpu_flags(),
            "torch": torch.__version__, "transformers": hf_version, "triformers": triformers.__version__,
            "python": platform.python_version(), "mkldnn_bf16": _has_bf16()}


def _has_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# -- floors ----------------------------------------------------------------------------------------
def _best_time(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up (first touch of pages, kernel selection)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_flops(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs), the attainable peak of dense layers."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    return 2 * n ** 3 / _best_time(lambda: torch.mm(a, b, out=out), reps)


def read_bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Bytes/s of summing a large fp32 tensor: the rate at which a decode step can stream weights."""
    x = torch.ones(int(gib * 2 ** 30) // 4)
    return x.numel() * 4 / _best_time(lambda: x.sum(), reps)


def copy_bandwidth(gib: float = 0.5, reps: int = 5) -> float:
    """Bytes/s moved by a large copy (read + write counted)."""
    x = torch.ones(int(gib * 2 ** 30) // 4)
    y = torch.empty_like(x)
    return 2 * x.numel() * 4 / _best_time(lambda: y.copy_(x), reps)


def measure_floors(quick: bool = False, smoke: bool = False) -> dict[str, float]:
    """The machine's limits; `smoke` uses sizes too small to mean anything, to test the machinery fast."""
    reps = 3 if quick else 7
    n, gib = (512, 1 / 64) if smoke else (2048, 1.0)
    floors = {"gemm_fp32_flops": gemm_flops(torch.float32, n, reps),
              "read_bandwidth": read_bandwidth(gib, reps),
              "copy_bandwidth": copy_bandwidth(gib / 2, reps)}
    if _has_bf16():
        floors["gemm_bf16_flops"] = gemm_flops(torch.bfloat16, n, reps)
    gc.collect()
    return floors


# -- timing ----------------------------------------------------------------------------------------
@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds, one per timed repetition

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def interleaved(contenders: dict[str, Callable[[], Any]], settings: Settings,
                log: Callable[[str], None] = print) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Time each contender `settings.reps` times, alternating their order each repetition.

    Returns the timings and the output of each contender's warm-up call (for the agreement checks).
    """
    outputs: dict[str, Any] = {}
    for name, fn in contenders.items():
        for _ in range(settings.warmup):
            start = time.perf_counter()
            outputs[name] = fn()
            log(f"  warm-up {name}: {time.perf_counter() - start:.3f} s")
    timings = {name: Timing() for name in contenders}
    names = list(contenders)
    for rep in range(settings.reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            gc.collect()
            start = time.perf_counter()
            contenders[name]()
            timings[name].samples.append(time.perf_counter() - start)
        log(f"  rep {rep + 1}/{settings.reps}: " + ", ".join(f"{n} {timings[n].samples[-1]:.3f} s" for n in names))
    return timings, outputs


# -- rows ------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table. `transformers`/`triformers` are in `unit`; `speedup` > 1 means triformers leads."""

    case: str
    label: str
    unit: str
    higher_is_better: bool
    transformers: float | None
    triformers: float | None
    speedup: float | None
    baseline: str = "transformers fp32"
    target: str = ""
    min_speedup: float | None = None  # the target as a number, where it is a speed-up
    met: bool | None = None
    floor: float | None = None  # the machine's best possible figure, in `unit`
    share_transformers: float | None = None  # fraction of the floor each library reaches
    share_triformers: float | None = None
    check: str = ""
    notes: str = ""
    skipped: str = ""  # why the row did not run
    floors: dict[str, float] = field(default_factory=dict)  # measured in the case's own process
    samples: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def speed_row(case: str, label: str, baseline: Timing, candidate: Timing, *, work: float = 1.0,
              unit: str = "s", baseline_name: str = "transformers fp32", min_speedup: float | None = None,
              floor_seconds: float | None = None, candidate_floor_seconds: float | None = None,
              check: str = "", notes: str = "") -> Row:
    """A row from two timings of the same run.

    work: units of output per call (tokens for generation); with work != 1 the figures are throughput
    (`unit`/s, higher is better), else seconds per call. floor_seconds: the machine's minimum time for
    one call, from which each library's share of the floor follows; candidate_floor_seconds when
    triformers runs in another precision (a bf16 step moves half the bytes of an fp32 one).
    """
    t_base, t_cand = baseline.median, candidate.median
    speedup = t_base / t_cand
    throughput = unit != "s"
    value = (lambda t: work / t) if throughput else (lambda t: t)
    row = Row(case=case, label=label, unit=unit, higher_is_better=throughput, transformers=value(t_base),
              triformers=value(t_cand), speedup=speedup, baseline=baseline_name, check=check, notes=notes,
              samples={"transformers": baseline.samples, "triformers": candidate.samples})
    if min_speedup is not None:
        strict = min_speedup == 1.0  # "faster than": strictly more than 1x
        row.target = f">{min_speedup:g}x" if strict else f">={min_speedup:g}x"
        row.min_speedup = min_speedup
        row.met = speedup > min_speedup if strict else speedup >= min_speedup
    if floor_seconds is not None:
        own_floor = candidate_floor_seconds or floor_seconds
        row.floor = value(own_floor)
        row.share_transformers, row.share_triformers = floor_seconds / t_base, own_floor / t_cand
    return row


def baseline_only_row(case: str, label: str, baseline: Timing, reason: str, *, work: float = 1.0,
                      unit: str = "s", baseline_name: str = "transformers fp32",
                      floor_seconds: float | None = None, notes: str = "") -> Row:
    """transformers measured, triformers could not run (`reason`): the row keeps the baseline figure."""
    throughput = unit != "s"
    t_base = baseline.median
    return Row(case=case, label=label, unit=unit, higher_is_better=throughput,
               transformers=work / t_base if throughput else t_base, triformers=None, speedup=None,
               baseline=baseline_name, skipped=f"triformers: {reason}", notes=notes,
               samples={"transformers": baseline.samples},
               floor=None if floor_seconds is None else (work / floor_seconds if throughput else floor_seconds),
               share_transformers=None if floor_seconds is None else floor_seconds / t_base)


def with_floors(rows: list[Row], floors: dict[str, float]) -> list[Row]:
    for row in rows:
        row.floors = dict(floors)
    return rows


def skipped_row(case: str, label: str, reason: str) -> Row:
    return Row(case=case, label=label, unit="", higher_is_better=True, transformers=None, triformers=None,
               speedup=None, skipped=reason)


# -- agreement checks ------------------------------------------------------------------------------
def token_agreement(reference: torch.Tensor, other: torch.Tensor, start: int) -> tuple[int, int]:
    """(tokens equal before each row's first divergence, summed over rows; new tokens in all) from `start`."""
    if reference.shape != other.shape:
        return 0, reference[:, start:].numel()
    same = (reference[:, start:] == other[:, start:]).long()
    prefix = same.cumprod(dim=1).sum()  # 1 until the first mismatch in each row
    return int(prefix), same.numel()


def describe_agreement(equal: int, total: int, what: str = "greedy tokens") -> str:
    return f"{what} equal {equal}/{total}" + ("" if equal == total else " (DIFFER)")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())
