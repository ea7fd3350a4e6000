"""BERT-base masked-LM forward, batch 8 x 128, fp32 and bf16 (issue 8).

The floor is the forward's matmul FLOPs (counted on transformers' model, attention included) over the
GEMM FLOP/s measured in this process (bf16 GEMM for the bf16 rows).
"""

from __future__ import annotations

from typing import Any

import torch

from ..harness import (Row, Settings, Skip, baseline_only_row, interleaved, max_abs_diff, measure_floors, speed_row,
                       with_floors)
from .common import build_checkpoint, count_flops, load_transformers, load_triformers, log, random_ids, temporary_folder

TARGETS = {"fp32": 1.2, "bf16/fp32": 2.0, "bf16/bf16": 1.0}


def _forward(model, batch: dict[str, torch.Tensor]):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(**batch).logits
    return run


def run(settings: Settings, model: str = "bert-base", batch: int = 8, length: int = 128) -> list[Row]:
    case = f"forward/{model}/{batch}x{length}"
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        models: dict[str, Any] = {"hf32": load_transformers(model, folder),
                                  "hf16": load_transformers(model, folder, torch.bfloat16)}
        reason = None
        try:
            models["tri32"] = load_triformers(model, folder)
            models["tri16"] = load_triformers(model, folder, torch.bfloat16)
        except Skip as skip:
            reason = str(skip)
            models.pop("tri32", None)
    ids = random_ids(batch, length, models["hf32"].config.vocab_size)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    flops = count_flops(_forward(models["hf32"], inputs))
    log(f"{case}: {flops / 1e9:.1f} GFLOP per forward; measuring the machine floor")
    floors = measure_floors(settings.quick, settings.smoke)
    floor32 = flops / floors["gemm_fp32_flops"]
    floor16 = flops / floors.get("gemm_bf16_flops", floors["gemm_fp32_flops"])
    contenders = {name: _forward(m, inputs) for name, m in models.items()}
    log(f"{case}: timing {', '.join(contenders)} ({settings.reps} reps)")
    timings, out = interleaved(contenders, settings, log)
    note = (f"{flops / 1e9:.0f} GFLOP per forward; GEMM {floors['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s fp32"
            + (f", {floors['gemm_bf16_flops'] / 1e9:.0f} GFLOP/s bf16" if "gemm_bf16_flops" in floors else "")
            + " in this process")
    label = f"{model} MLM forward {batch}x{length}"
    if reason is not None:
        return with_floors([baseline_only_row(case, f"{label} fp32", timings["hf32"], reason, floor_seconds=floor32),
                baseline_only_row(case, f"{label} bf16", timings["hf16"], reason, baseline_name="transformers bf16",
                                  floor_seconds=floor16)], floors)
    argmax16 = (out["tri16"].argmax(-1) == out["tri32"].argmax(-1)).float().mean()
    return with_floors([
        speed_row(case, f"{label} fp32", timings["hf32"], timings["tri32"], min_speedup=TARGETS["fp32"],
                  floor_seconds=floor32, check=f"max |Δlogit| {max_abs_diff(out['hf32'], out['tri32']):.1e}",
                  notes=note),
        speed_row(case, f"{label} bf16 vs tf fp32", timings["hf32"], timings["tri16"], min_speedup=TARGETS["bf16/fp32"],
                  floor_seconds=floor32, candidate_floor_seconds=floor16,
                  check=f"bf16 argmax = fp32 on {100 * float(argmax16):.1f}% of positions", notes=note),
        speed_row(case, f"{label} bf16 vs tf bf16", timings["hf16"], timings["tri16"],
                  baseline_name="transformers bf16", min_speedup=TARGETS["bf16/bf16"], floor_seconds=floor16,
                  check=f"max |Δlogit| vs tf bf16 {max_abs_diff(out['hf16'], out['tri16']):.1e}", notes=note),
    ], floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name="forward/bert-base/8x128", run="forward:run", params={}, quick=True)]
