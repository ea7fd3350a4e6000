"""LoRA against full fine-tuning (issue 16): one training step of flan-t5-small and GPT-2 (124M), and the same
LoRA step in peft 0.21 over transformers.

Four contenders per model: triformers full, triformers LoRA, transformers full, peft + transformers LoRA. Each
loads the same random checkpoint of the real shape, builds `torch.optim.AdamW(lr=1e-4, weight_decay=0.01,
fused=True)` over its trainable parameters and takes training steps (training mode, fp32, the batch of the
`train/` cases). LoRA: r=16, alpha=32, dropout 0.05 on T5's q, v and GPT-2's c_attn, as the course's lab sets it
(peft's defaults otherwise).

Peak memory: each contender in a fresh interpreter (a warm process would share its allocator's pages and peak),
the process's peak resident set (VmHWM, reset once the model is loaded and wrapped) over the warm-up and timed
steps, over its RSS after importing the libraries: the weights, gradients, optimizer state and activations of
training, without the transient copies of loading. Step time: the four in one process, their steps
interleaved repetition by repetition (as the other cases time), so that a change in the host's speed between
processes cannot bias a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..harness import Row, Settings, Timing, speed_row
from .common import build_checkpoint, log, temporary_folder
from .training import ADAMW, make_batch

ROOT = Path(__file__).resolve().parents[2]
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05)
TARGETS = {"flan-t5-small": ["q", "v"], "gpt2-124m": ["c_attn"]}
MEMORY_TARGET = 0.6  # LoRA's peak under 60% of full fine-tuning's

def import_library(lib: str):
    """(Auto class for the model, its LoRA module) of `lib`, importing only that library (and peft for
    transformers): the memory processes measure their RSS after this."""
    if lib == "triformers":
        import triformers
        import triformers.peft as lora_module
        return triformers, lora_module
    import peft as lora_module
    import transformers

    transformers.utils.logging.disable_progress_bar()
    _ = transformers.T5ForConditionalGeneration, transformers.GPT2LMHeadModel  # the model modules, imported now
    return transformers, lora_module


def load(lib: str, mode: str, model_name: str, folder, lora: dict[str, Any]):
    """The contender's model in fp32, with its LoRA adapter when `mode` is "lora"."""
    library, lora_module = import_library(lib)
    auto = library.AutoModelForSeq2SeqLM if "t5" in model_name else library.AutoModelForCausalLM
    model = auto.from_pretrained(folder, dtype=torch.float32)
    return lora_module.get_peft_model(model, lora_module.LoraConfig(**lora)) if mode == "lora" else model


def training_step(model, model_name: str) -> tuple[int, Callable[[], float]]:
    """(trainable parameter count, one training step returning its loss): AdamW over the trainable parameters."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, **ADAMW)
    batch = make_batch(model_name, model.config.vocab_size)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        return float(loss)
    return sum(p.numel() for p in params), step


STEP_SCRIPT = r"""
import json, sys
import torch
from bench.cases.lora import import_library, load, training_step

def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

lib, mode, model_name, folder, threads, steps = sys.argv[1:7]
lora = json.loads(sys.argv[7])
torch.set_num_threads(int(threads))
torch.set_flush_denormal(True)
import_library(lib)
before = memory()
model = load(lib, mode, model_name, folder, lora)
try:  # the peak of the steps, not of loading (a loader's transient copies are another case's subject)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    reset = True
except OSError:
    reset = False
trainable, step = training_step(model, model_name)
losses = [step() for _ in range(int(steps))]
after = memory()
print(json.dumps({"loss": losses[0], "trainable": trainable, "peak": after["VmHWM"] - before["VmRSS"],
                  "reset": reset}))
"""

CONTENDERS = [("triformers", "full"), ("triformers", "lora"), ("transformers", "full"), ("transformers", "lora")]

TIMING_SCRIPT = r"""
import json, sys
import torch
from bench.cases.lora import CONTENDERS, load, training_step
from bench.harness import Settings, interleaved

model_name, folder, threads, warmup, reps = sys.argv[1:6]
lora = json.loads(sys.argv[6])
torch.set_num_threads(int(threads))
torch.set_flush_denormal(True)
steps = {f"{lib} {mode}": training_step(load(lib, mode, model_name, folder, lora), model_name)[1]
         for lib, mode in CONTENDERS}
timings, _ = interleaved(steps, Settings(warmup=int(warmup), reps=int(reps)), log=lambda m: print(m, file=sys.stderr))
print(json.dumps({name: t.samples for name, t in timings.items()}))
"""


def _step_process(lib: str, mode: str, model: str, folder, settings: Settings) -> dict[str, Any]:
    lora = dict(LORA, target_modules=TARGETS[model])
    args = [sys.executable, "-c", STEP_SCRIPT, lib, mode, model, str(folder), str(settings.threads),
            str(settings.warmup + settings.reps), json.dumps(lora)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)  # `bench` importable
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} {mode} step failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _timing_process(model: str, folder, settings: Settings) -> dict[tuple[str, str], list[float]]:
    lora = dict(LORA, target_modules=TARGETS[model])
    args = [sys.executable, "-c", TIMING_SCRIPT, model, str(folder), str(settings.threads), str(settings.warmup),
            str(settings.reps), json.dumps(lora)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"interleaved LoRA steps failed:\n{proc.stderr[-2000:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("  rep "):
            log(line)
    samples = json.loads(proc.stdout.strip().splitlines()[-1])
    return {tuple(name.split(" ")): times for name, times in samples.items()}


def run_lora(settings: Settings, model: str) -> list[Row]:
    case = f"lora/{model}"
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        memory = Settings(threads=settings.threads, warmup=settings.warmup, reps=min(settings.reps, 2))
        for lib, mode in CONTENDERS:
            log(f"{case}: {lib} {mode} in a fresh process (peak memory): {memory.warmup} + {memory.reps} steps")
            results[lib, mode] = _step_process(lib, mode, model, folder, memory)
            r = results[lib, mode]
            log(f"  peak {r['peak'] / 1e6:.0f} MB, {r['trainable']} trainable, first loss {r['loss']:.5f}")
        log(f"{case}: the four in one process, steps interleaved: {settings.warmup} warm-up + {settings.reps} timed")
        samples = _timing_process(model, folder, settings)
    tri_lora, peft_lora = results["triformers", "lora"], results["transformers", "lora"]
    timing = {key: Timing(list(samples[key])) for key in CONTENDERS}
    mb = {key: r["peak"] / 1e6 for key, r in results.items()}
    same = tri_lora["trainable"] == peft_lora["trainable"]
    note = ("lora: step times interleaved in one process, peak memory from a fresh process per contender; "
            "AdamW(lr=1e-4, weight_decay=0.01, fused=True) over the trainable "
            f"parameters; LoRA r=16 alpha=32 dropout 0.05 on {','.join(TARGETS[model])}; peak = VmHWM of the steps "
            "(reset after loading) - RSS after the imports"
            + ("" if all(r["reset"] for r in results.values()) else " (VmHWM not reset)"))
    median = {key: t.median for key, t in timing.items()}
    side = (f"step: triformers full {median['triformers', 'full']:.3f} s / LoRA "
            f"{median['triformers', 'lora']:.3f} s, transformers full {median['transformers', 'full']:.3f}"
            f" s / peft {median['transformers', 'lora']:.3f} s; peak: triformers full "
            f"{mb['triformers', 'full']:.0f} / LoRA {mb['triformers', 'lora']:.0f} MB, transformers full "
            f"{mb['transformers', 'full']:.0f} / peft "
            f"{mb['transformers', 'lora']:.0f} MB")
    label = f"{model} LoRA train step"
    rows = [
        speed_row(case, f"{label} vs peft + transformers", timing["transformers", "lora"], timing["triformers", "lora"],
                  baseline_name="peft + transformers LoRA", min_speedup=1.0, notes=note,
                  check=f"trainable {tri_lora['trainable']:,} vs peft {peft_lora['trainable']:,}"
                        f" ({'equal' if same else 'DIFFERENT'}); first loss {tri_lora['loss']:.5f} vs "
                        f"{peft_lora['loss']:.5f}"),
        speed_row(case, f"{label} vs triformers full", timing["triformers", "full"], timing["triformers", "lora"],
                  baseline_name="triformers full fine-tuning", notes=note, check=side),
    ]
    ratio = mb["triformers", "lora"] / mb["triformers", "full"]
    rows.append(Row(case=case, label=f"{label} peak memory vs triformers full", unit="MB", higher_is_better=False,
                    baseline="triformers full fine-tuning", transformers=mb["triformers", "full"],
                    triformers=mb["triformers", "lora"], speedup=1 / ratio,
                    target=f"< {MEMORY_TARGET:.0%} of full", met=ratio < MEMORY_TARGET, notes=note,
                    check=f"LoRA peak = {ratio:.0%} of full fine-tuning's"))
    rows.append(Row(case=case, label=f"{label} peak memory vs peft + transformers", unit="MB",
                    higher_is_better=False, baseline="peft + transformers LoRA",
                    transformers=mb["transformers", "lora"],
                    triformers=mb["triformers", "lora"],
                    speedup=mb["transformers", "lora"] / mb["triformers", "lora"], notes=note,
                    check=f"peft LoRA peak = {mb['transformers', 'lora'] / mb['transformers', 'full']:.0%} of "
                          "transformers full fine-tuning's"))
    return rows


def cases() -> list[dict[str, Any]]:
    return [dict(name=f"lora/{model}", run="lora:run_lora", params=dict(model=model), quick=True) for model in TARGETS]
