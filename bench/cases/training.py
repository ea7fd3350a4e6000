"""One training step (forward + backward + AdamW) in fp32 and with bf16 autocast (issue 8).

Both libraries get the same settings: `torch.set_flush_denormal(True)` (random-init T5 is slowed
several-fold by denormal floats otherwise), dropout as configured (training mode), and
`torch.optim.AdamW(lr=1e-4, weight_decay=0.01, fused=True)`, which is transformers' Trainer default
with torch >= 2.8. The fp32 and autocast contenders of a library share its model and optimizer.
The floor is the step's matmul FLOPs (forward + backward, counted on transformers' model) over the
measured GEMM FLOP/s, plus AdamW's traffic (read p, g, m, v; write p, m, v: 28 bytes per parameter)
over the read bandwidth.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..harness import Row, Settings, Skip, baseline_only_row, interleaved, measure_floors, speed_row, with_floors
from .common import (build_checkpoint, count_flops, family, load_transformers, load_triformers, log, random_ids,
                     temporary_folder)

# model -> (batch, input length, target length for encoder-decoders)
SHAPES = {"bert-base": (8, 128, 0), "gpt2-124m": (4, 256, 0), "flan-t5-small": (8, 128, 32)}
TARGETS = {"fp32": 1.3, "bf16/fp32": 2.0}
ADAMW = dict(lr=1e-4, weight_decay=0.01, fused=True)


def make_batch(model: str, vocab_size: int) -> dict[str, torch.Tensor]:
    batch, length, target_length = SHAPES[model]
    ids = random_ids(batch, length, vocab_size)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    kind = family(model)
    if kind == "encoder":  # MLM: 15% of positions carry a label, the rest are ignored (-100)
        chosen = torch.rand(ids.shape, generator=torch.Generator().manual_seed(2)) < 0.15
        inputs["labels"] = torch.where(chosen, ids, torch.full_like(ids, -100))
        inputs["token_type_ids"] = torch.zeros_like(ids)
    elif kind == "decoder":  # CLM: the labels are the inputs, shifted inside the loss
        inputs["labels"] = ids.clone()
    else:
        inputs["labels"] = random_ids(batch, target_length, vocab_size, seed=3)
    return inputs


def _step(model, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
          autocast: bool) -> Callable[[], float]:
    def run() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        return float(loss)
    return run


def _eval_loss(model, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(model(**batch).loss)
    model.train()
    return loss


def run(settings: Settings, model: str) -> list[Row]:
    torch.set_flush_denormal(True)
    batch_size, length, target_length = SHAPES[model]
    shape = f"{batch_size}x{length}" + (f" (in) + {target_length} (out)" if target_length else "")
    case = f"train/{model}"
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        models: dict[str, Any] = {"hf": load_transformers(model, folder)}
        reason = None
        try:
            models["tri"] = load_triformers(model, folder)
        except Skip as skip:
            reason = str(skip)
    batch = make_batch(model, models["hf"].config.vocab_size)
    losses = {name: _eval_loss(m, batch) for name, m in models.items()}  # same weights: same loss
    flops = count_flops(lambda: models["hf"](**batch).loss.backward())
    models["hf"].zero_grad(set_to_none=True)
    params = sum(p.numel() for p in models["hf"].parameters())
    log(f"{case}: {flops / 1e9:.0f} GFLOP per step, {params / 1e6:.0f}M parameters; measuring the machine floor")
    floors = measure_floors(settings.quick, settings.smoke)
    adamw_seconds = 28 * params / floors["read_bandwidth"]
    floor32 = flops / floors["gemm_fp32_flops"] + adamw_seconds
    floor16 = flops / floors.get("gemm_bf16_flops", floors["gemm_fp32_flops"]) + adamw_seconds
    contenders = {}
    for name, m in models.items():
        m.train()
        optimizer = torch.optim.AdamW(m.parameters(), **ADAMW)
        contenders[f"{name}32"] = _step(m, optimizer, batch, autocast=False)
        contenders[f"{name}16"] = _step(m, optimizer, batch, autocast=True)
    log(f"{case}: timing {', '.join(contenders)} ({settings.reps} reps)")
    timings, _ = interleaved(contenders, settings, log)
    note = ("training: torch.set_flush_denormal(True) and AdamW(lr=1e-4, weight_decay=0.01, fused=True) for both "
            "libraries, dropout on; floor = matmul FLOPs / GEMM FLOP/s + AdamW bytes / read bandwidth")
    label = f"{model} train step {shape}"
    if reason is not None:
        return with_floors([
            baseline_only_row(case, f"{label} fp32", timings["hf32"], reason, floor_seconds=floor32, notes=note),
            baseline_only_row(case, f"{label} bf16 autocast", timings["hf16"], reason,
                              baseline_name="transformers bf16 autocast", floor_seconds=floor16)], floors)
    check = f"eval loss {losses['hf']:.5f} vs {losses['tri']:.5f} (|Δ| {abs(losses['hf'] - losses['tri']):.1e})"
    return with_floors([
        speed_row(case, f"{label} fp32", timings["hf32"], timings["tri32"], min_speedup=TARGETS["fp32"],
                  floor_seconds=floor32, check=check, notes=note),
        speed_row(case, f"{label} bf16 autocast vs tf fp32", timings["hf32"], timings["tri16"],
                  min_speedup=TARGETS["bf16/fp32"], floor_seconds=floor32, candidate_floor_seconds=floor16, notes=note),
        speed_row(case, f"{label} bf16 autocast vs tf bf16", timings["hf16"], timings["tri16"],
                  baseline_name="transformers bf16 autocast", floor_seconds=floor16, notes=note),
    ], floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name=f"train/{model}", run="training:run", params=dict(model=model), quick=True) for model in SHAPES]
