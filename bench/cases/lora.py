"""LoRA against full fine-tuning (issue 16): one training step of flan-t5-small and GPT-2 (124M), and the same
LoRA step in peft 0.21 over transformers.

Four contenders per model, each in a fresh interpreter (a warm process would share its allocator's pages and
peak): triformers full, triformers LoRA, transformers full, peft + transformers LoRA. Every one loads the same
random checkpoint of the real shape, builds `torch.optim.AdamW(lr=1e-4, weight_decay=0.01, fused=True)` over its
trainable parameters, takes the warm-up steps and then the timed ones (training mode, fp32, the batch of the
`train/` cases). LoRA: r=16, alpha=32, dropout 0.05 on T5's q, v and GPT-2's c_attn, as the course's lab sets it
(peft's defaults otherwise). Peak memory: the process's peak resident set (VmHWM, reset once the model is loaded
and wrapped) during the steps, over its RSS after importing the libraries: the weights, gradients, optimizer state
and activations of training, without the transient copies of loading.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..harness import Row, Settings, Timing, speed_row
from .common import build_checkpoint, log, temporary_folder

ROOT = Path(__file__).resolve().parents[2]
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05)
TARGETS = {"flan-t5-small": ["q", "v"], "gpt2-124m": ["c_attn"]}
MEMORY_TARGET = 0.6  # LoRA's peak under 60% of full fine-tuning's

STEP_SCRIPT = r"""
import json, sys, time
import torch
from bench.cases.training import ADAMW, make_batch

def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

lib, mode, model_name, folder, threads, warmup, reps = sys.argv[1:8]
lora = json.loads(sys.argv[8])
torch.set_num_threads(int(threads))
torch.set_flush_denormal(True)
if lib == "triformers":
    import triformers, triformers.peft as peft
    auto = triformers.AutoModelForSeq2SeqLM if "t5" in model_name else triformers.AutoModelForCausalLM
else:
    import transformers, peft
    transformers.utils.logging.disable_progress_bar()
    auto = transformers.AutoModelForSeq2SeqLM if "t5" in model_name else transformers.AutoModelForCausalLM
    transformers.T5ForConditionalGeneration, transformers.GPT2LMHeadModel  # the model modules, imported now
before = memory()
model = auto.from_pretrained(folder, dtype=torch.float32)
if mode == "lora":
    model = peft.get_peft_model(model, peft.LoraConfig(**lora))
try:  # the peak of the steps, not of loading (a loader's transient copies are another case's subject)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    reset = True
except OSError:
    reset = False
model.train()
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, **ADAMW)
batch = make_batch(model_name, model.config.vocab_size)
times, losses = [], []
for i in range(int(warmup) + int(reps)):
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    if i >= int(warmup):
        times.append(time.perf_counter() - start)
    losses.append(float(loss))
after = memory()
print(json.dumps({"times": times, "loss": losses[0], "trainable": sum(p.numel() for p in params),
                  "peak": after["VmHWM"] - before["VmRSS"], "reset": reset}))
"""

CONTENDERS = [("triformers", "full"), ("triformers", "lora"), ("transformers", "full"), ("transformers", "lora")]


def _step_process(lib: str, mode: str, model: str, folder, settings: Settings) -> dict[str, Any]:
    lora = dict(LORA, target_modules=TARGETS[model])
    args = [sys.executable, "-c", STEP_SCRIPT, lib, mode, model, str(folder), str(settings.threads),
            str(settings.warmup), str(settings.reps), json.dumps(lora)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)  # `bench` importable
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} {mode} step failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_lora(settings: Settings, model: str) -> list[Row]:
    case = f"lora/{model}"
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        for lib, mode in CONTENDERS:
            log(f"{case}: {lib} {mode}: {settings.warmup} warm-up + {settings.reps} timed steps")
            results[lib, mode] = _step_process(lib, mode, model, folder, settings)
            r = results[lib, mode]
            log(f"  median {statistics.median(r['times']):.3f} s, peak {r['peak'] / 1e6:.0f} MB, "
                f"{r['trainable']} trainable, first loss {r['loss']:.5f}")
    tri_full, tri_lora = results["triformers", "full"], results["triformers", "lora"]
    hf_full, peft_lora = results["transformers", "full"], results["transformers", "lora"]
    timing = {key: Timing(list(r["times"])) for key, r in results.items()}
    mb = {key: r["peak"] / 1e6 for key, r in results.items()}
    same = tri_lora["trainable"] == peft_lora["trainable"]
    note = ("lora: fresh process per contender; AdamW(lr=1e-4, weight_decay=0.01, fused=True) over the trainable "
            f"parameters; LoRA r=16 alpha=32 dropout 0.05 on {','.join(TARGETS[model])}; peak = VmHWM of the steps "
            "(reset after loading) - RSS after the imports"
            + ("" if all(r["reset"] for r in results.values()) else " (VmHWM not reset)"))
    side = (f"step: triformers full {statistics.median(tri_full['times']):.3f} s / LoRA "
            f"{statistics.median(tri_lora['times']):.3f} s, transformers full {statistics.median(hf_full['times']):.3f}"
            f" s / peft {statistics.median(peft_lora['times']):.3f} s; peak: triformers full "
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
