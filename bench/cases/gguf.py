"""GGUF files (issue 12, item 4): the real SmolLM2-135M-Instruct Q4_1 file, loaded and decoded by both libraries.

Loading: `AutoTokenizer.from_pretrained(folder, gguf_file=...)` and `AutoModelForCausalLM.from_pretrained(folder,
gguf_file=...)` (dequantized fp32 in both), interleaved in one process. Decoding at batch 1: transformers fp32
(the GGUF dequantized, the only way it runs one on CPU) against triformers fp32, bf16 (packed), int8 and int4,
all from the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..harness import (Row, Settings, Skip, describe_agreement, interleaved, measure_floors, speed_row,
                       token_agreement, with_floors)
from .common import log, random_ids

ROOT = Path(__file__).resolve().parent.parent.parent
FILE = ROOT / ".assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT, NEW_TOKENS, QUICK_NEW_TOKENS = 32, 64, 16


def _file() -> Path:
    if not FILE.exists():
        raise Skip(f"{FILE} is missing: run `bash scripts/fetch_assets.sh .assets`")
    return FILE


def run_loading(settings: Settings) -> list[Row]:
    import transformers

    import triformers

    path, case = _file(), "gguf/smollm2/load"
    folder, name = str(path.parent), path.name
    tokenizers = {"transformers": lambda: transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name),
                  "triformers": lambda: triformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)}
    timings, _ = interleaved(tokenizers, settings, log)
    rows = [speed_row(case, "AutoTokenizer.from_pretrained(gguf_file=) SmolLM2 (49152 tokens, 48900 merges)",
                      timings["transformers"], timings["triformers"], baseline_name="transformers", min_speedup=1.0)]
    label = "AutoModelForCausalLM.from_pretrained(gguf_file=) SmolLM2 Q4_1 -> fp32"
    models = {"transformers": lambda: transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name),
              "triformers": lambda: triformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)}
    timings, _ = interleaved(models, Settings(settings.quick, settings.threads, min(settings.reps, 3)), log)
    return rows + [speed_row(case, label, timings["transformers"], timings["triformers"], baseline_name="transformers",
                             min_speedup=1.0)]


def _generator(model, ids: torch.Tensor, new: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False, pad_token_id=2)
    return run


def run_decode(settings: Settings) -> list[Row]:
    import transformers

    import triformers

    path, case = _file(), "gguf/smollm2/decode-b1"
    new = QUICK_NEW_TOKENS if settings.quick else NEW_TOKENS
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    ids = random_ids(1, PROMPT, hf.config.vocab_size)
    load = triformers.AutoModelForCausalLM.from_pretrained
    contenders = {"hf32": _generator(hf, ids, new), "tri32": _generator(load(path), ids, new),
                  "tribf16": _generator(load(path, dtype=torch.bfloat16).pack_weights(), ids, new),
                  "tri8": _generator(load(path, quantize="int8"), ids, new),
                  "tri4": _generator(load(path, quantize="int4"), ids, new)}
    floors = measure_floors(settings.quick, settings.smoke)
    log(f"{case}: timing {', '.join(contenders)} ({new} new tokens, {settings.reps} reps)")
    timings, outputs = interleaved(contenders, settings, log)
    params = sum(p.numel() for n, p in hf.named_parameters() if p.dim() == 2)  # tied head read once per step
    bytes_per_weight = {"tri32": 4, "tribf16": 2, "tri8": 1, "tri4": 0.6}  # int4: codes + bf16 scales, int8 head
    rows = []
    for name, label in (("tri32", "fp32"), ("tribf16", "bf16 (packed)"), ("tri8", "int8"), ("tri4", "int4")):
        kept = describe_agreement(*token_agreement(outputs["hf32"], outputs[name], PROMPT), f"{label} tokens = fp32")
        rows.append(speed_row(case, f"SmolLM2-135M (GGUF Q4_1) b1 decode, triformers {label}", timings["hf32"],
                              timings[name], work=new, unit="tok/s", min_speedup=1.0,
                              floor_seconds=new * params * 4 / floors["read_bandwidth"],
                              candidate_floor_seconds=new * params * bytes_per_weight[name] / floors["read_bandwidth"],
                              check=kept, notes=f"prompt {PROMPT}, {new} new tokens forced, greedy"))
    return with_floors(rows, floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name="gguf/smollm2/load", run="gguf:run_loading", params={}, quick=True),
            dict(name="gguf/smollm2/decode-b1", run="gguf:run_decode", params={}, quick=False)]
