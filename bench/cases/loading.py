"""Start-up costs (issue 8): `from_pretrained` of a GPT-2-size checkpoint, and import + first Auto class.

Every measurement runs in a fresh interpreter (a warm process would hide the cost), alternating the
two libraries. Loading: wall time of `from_pretrained` alone (the library and its model module are
imported first), and until the end of a first 8-token forward (a lazily mapped checkpoint is read only
then); peak extra resident memory over the RSS just before the call, until after that forward, read
from /proc/self/status after resetting the peak (VmHWM) through /proc/self/clear_refs. Import: time from
before `import` to a first model built by `AutoModelForCausalLM.from_config` of a tiny GPT-2 config.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..harness import Row, Settings, Timing, interleaved, speed_row
from .common import build_checkpoint, log, temporary_folder

LOAD_SCRIPT = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
lib, folder = sys.argv[1], sys.argv[2]
if lib == "transformers":
    import transformers
    auto = transformers.AutoModelForCausalLM
    transformers.GPT2LMHeadModel  # imports the model module now: import time is the other case
else:
    import triformers
    auto = triformers.AutoModelForCausalLM

def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    reset = True
except OSError:
    reset = False
before = memory()
start = time.perf_counter()
model = auto.from_pretrained(folder, dtype=torch.float32)
seconds = time.perf_counter() - start
loaded = memory()
with torch.inference_mode():  # lazily mapped weights are only read now
    model(torch.arange(5, 13)[None])
first_forward = time.perf_counter() - start
after = memory()
print(json.dumps({"seconds": seconds, "first_forward": first_forward, "peak_reset": reset,
                  "extra_peak_load": loaded["VmHWM"] - before["VmRSS"],
                  "extra_peak": after["VmHWM"] - before["VmRSS"]}))
"""

IMPORT_SCRIPT = {
    "triformers": """
import time
start = time.perf_counter()
import triformers
config = triformers.AutoConfig.for_model("gpt2", n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=128)
model = triformers.AutoModelForCausalLM.from_config(config)
print(time.perf_counter() - start)
""",
    "transformers": """
import time
start = time.perf_counter()
import transformers
config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=128)
model = transformers.AutoModelForCausalLM.from_config(config)
print(time.perf_counter() - start)
""",
}


def _python(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def run_loading(settings: Settings, model: str = "gpt2-124m") -> list[Row]:
    case = f"load/{model}"
    results: dict[str, list[dict[str, Any]]] = {"transformers": [], "triformers": []}
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        weights = sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))

        def load(lib: str):
            def run() -> None:
                results[lib].append(json.loads(_python(["-c", LOAD_SCRIPT, lib, str(folder), str(settings.threads)])))
            return run

        _, _ = interleaved({lib: load(lib) for lib in results}, settings, log)
    # the in-process figures of the timed repetitions (the warm-up loads, first from disk, are dropped)
    timed = {lib: runs[settings.warmup:] for lib, runs in results.items()}
    seconds = {lib: Timing([r["seconds"] for r in runs]) for lib, runs in timed.items()}
    first = {lib: Timing([r["first_forward"] for r in runs]) for lib, runs in timed.items()}
    extra = {lib: statistics.median(r["extra_peak"] for r in runs) / 1e6 for lib, runs in timed.items()}
    reset = all(r["peak_reset"] for runs in timed.values() for r in runs)
    note = ("load: fresh process per load, page cache warm; a library that maps the file lazily reads the weights "
            "at the first forward (8 tokens), hence both figures; peak extra RSS = VmHWM after the first forward - "
            f"VmRSS before from_pretrained{'' if reset else ' (VmHWM could not be reset: it includes start-up)'}")
    label = f"from_pretrained {model} ({weights / 1e6:.0f} MB safetensors)"
    time_row = speed_row(case, label, seconds["transformers"], seconds["triformers"], baseline_name="transformers",
                         min_speedup=1.0, notes=note)
    first_row = speed_row(case, f"{label} + first forward", first["transformers"], first["triformers"],
                          baseline_name="transformers", min_speedup=1.0, notes=note)
    limit = 1.2 * weights / 1e6
    memory_row = Row(case=case, label=f"from_pretrained {model} peak extra RSS", unit="MB", higher_is_better=False,
                     baseline="transformers",
                     transformers=extra["transformers"], triformers=extra["triformers"],
                     speedup=extra["transformers"] / extra["triformers"], target=f"<= {limit:.0f} MB (1.2x weights)",
                     met=extra["triformers"] <= limit, notes=note,
                     check=f"triformers peak extra = {extra['triformers'] * 1e6 / weights:.2f}x the weights")
    memory_row.samples = {lib: [r["extra_peak"] for r in runs] for lib, runs in timed.items()}
    return [time_row, first_row, memory_row]


def run_import(settings: Settings) -> list[Row]:
    case = "import"
    inner: dict[str, list[float]] = {"transformers": [], "triformers": []}

    def start(lib: str):
        return lambda: inner[lib].append(float(_python(["-c", IMPORT_SCRIPT[lib]])))

    reps = max(settings.reps, 5)  # cheap enough to repeat more, and noisy
    wall, _ = interleaved({lib: start(lib) for lib in inner}, Settings(settings.quick, settings.threads, reps), log)
    timed = {lib: Timing(values[settings.warmup:]) for lib, values in inner.items()}  # drop warm-up processes
    note = ("import: fresh interpreter each time; from before `import` to a model built by "
            "AutoModelForCausalLM.from_config(tiny GPT-2 config); torch's own import included for both")
    row = speed_row(case, "import + first Auto class", timed["transformers"], timed["triformers"], min_speedup=3.0,
                    baseline_name="transformers",
                    notes=note, check=f"whole process {wall['transformers'].median:.2f} s vs "
                                      f"{wall['triformers'].median:.2f} s")
    return [row]


def cases() -> list[dict[str, Any]]:
    return [dict(name="load/gpt2-124m", run="loading:run_loading", params={}, quick=True),
            dict(name="import", run="loading:run_import", params={}, quick=True)]
