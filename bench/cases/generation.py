"""Greedy `generate` of decoders (GPT-2, BLOOM) and encoder-decoders (flan-T5, BART), issues 3 and 4.

One process per (model, batch): transformers fp32, triformers fp32, and for bf16 transformers bf16
and triformers bf16 (with `pack_weights()`, as the README advises for bf16 inference), and at
batch 8 triformers fp32 with `pack_weights()` too, all timed interleaved. Every sequence is forced to the same length
(min_new_tokens = max_new_tokens). The floor of a step is the bytes it must read (decoder weights,
output layer, KV caches) over the read bandwidth measured in this process.
"""

from __future__ import annotations

from typing import Any

import torch

from ..harness import (Row, Settings, Skip, baseline_only_row, describe_agreement, interleaved, measure_floors,
                       speed_row, token_agreement, with_floors)
from .common import (build_checkpoint, decode_step_bytes, family, load_transformers, load_triformers, log,
                     random_ids, require_generate, temporary_folder)

PROMPT = {"decoder": 32, "encoder-decoder": 64}  # prompt / encoder input length
NEW_TOKENS = {"decoder": 128, "encoder-decoder": 64}
QUICK_NEW_TOKENS = {"decoder": 32, "encoder-decoder": 16}

# minimum speed-ups from the issues: (model, batch, row kind) -> x transformers
TARGETS: dict[tuple[str, int, str], float] = {
    ("gpt2-124m", 1, "fp32"): 1.1, ("gpt2-124m", 8, "fp32"): 1.5, ("tiny-gpt2", 1, "fp32"): 3.0,
    ("gpt2-124m", 1, "bf16/fp32"): 1.8, ("bloom-560m", 1, "bf16/fp32"): 1.8,
    ("flan-t5-small", 1, "fp32"): 1.25, ("flan-t5-small", 8, "fp32"): 1.5,
    ("bart-base", 1, "fp32"): 1.25, ("bart-base", 8, "fp32"): 1.5,
    ("tiny-t5", 1, "fp32"): 3.0, ("tiny-t5", 8, "fp32"): 3.0, ("tiny-bart", 1, "fp32"): 3.0,
    ("tiny-bart", 8, "fp32"): 3.0,
    ("flan-t5-small", 1, "bf16/fp32"): 1.8, ("bart-base", 1, "bf16/fp32"): 1.8,
}
for _model in ("gpt2-124m", "bloom-560m", "tiny-gpt2"):
    TARGETS[(_model, 1, "bf16/bf16")] = 1.0  # issue 3: "faster than transformers in bf16"


def _generator(model, input_ids: torch.Tensor, mask: torch.Tensor, new: int, pad_token_id: int | None):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(input_ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False, num_beams=1, pad_token_id=pad_token_id)
    return run


def run(settings: Settings, model: str, batch: int) -> list[Row]:
    kind = family(model)
    prompt = PROMPT[kind]
    new = 4 if settings.smoke else (QUICK_NEW_TOKENS if settings.quick else NEW_TOKENS)[kind]
    with_bf16 = batch == 1 or not settings.quick
    case = f"generate/{model}/b{batch}"
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        models: dict[str, Any] = {"hf32": load_transformers(model, folder)}
        if with_bf16:
            models["hf16"] = load_transformers(model, folder, torch.bfloat16)
        reason = None
        try:
            models["tri32"] = load_triformers(model, folder)
            require_generate(models["tri32"])
            if batch > 1:  # the documented option for batched CPU inference, at the cost of a weight copy
                models["tri32p"] = load_triformers(model, folder).pack_weights()
            if with_bf16:
                # bf16 inference as documented: weights packed once for oneDNN (a second copy)
                models["tri16"] = load_triformers(model, folder, torch.bfloat16).pack_weights()
        except Skip as skip:
            reason = str(skip)
            models.pop("tri32", None)
        config = models["hf32"].config
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        input_ids = random_ids(batch, prompt, config.vocab_size)
        mask = torch.ones_like(input_ids)
        contenders = {name: _generator(m, input_ids, mask, new, pad) for name, m in models.items()}
        # which positions are new: decoder-only returns prompt + new, encoder-decoder start token + new
        start = prompt if kind == "decoder" else 1
        self_positions = (start + new / 2) if kind == "decoder" else (1 + new / 2)
        cross = prompt if kind == "encoder-decoder" else 0
        step_bytes = {dtype_bytes: decode_step_bytes(models["hf32"], batch, self_positions, cross, dtype_bytes)
                      for dtype_bytes in (4, 2)}
        log(f"{case}: measuring the machine floor")
        floors = measure_floors(settings.quick, settings.smoke)
        log(f"{case}: timing {', '.join(contenders)} ({new} new tokens, {settings.reps} reps)")
        timings, outputs = interleaved(contenders, settings, log)
    floor32 = new * step_bytes[4] / floors["read_bandwidth"]
    floor16 = new * step_bytes[2] / floors["read_bandwidth"]
    tokens = batch * new
    note = (f"generate ({kind}): {'prompt' if kind == 'decoder' else 'encoder input'} {prompt}, {new} new tokens "
            "forced, greedy; floor = bytes of weights + KV cache read per step / read bandwidth")
    common = dict(work=tokens, unit="tok/s")

    def target(kind_: str) -> float | None:
        return TARGETS.get((model, batch, kind_))

    rows: list[Row] = []
    if reason is not None:
        rows.append(baseline_only_row(case, f"{model} b{batch} fp32", timings["hf32"], reason,
                                      floor_seconds=floor32, **common))
        if with_bf16:
            rows.append(baseline_only_row(case, f"{model} b{batch} bf16", timings["hf16"], reason,
                                          baseline_name="transformers bf16", floor_seconds=floor16, **common))
        return with_floors(rows, floors)
    equal32 = describe_agreement(*token_agreement(outputs["hf32"], outputs["tri32"], start))
    rows.append(speed_row(case, f"{model} b{batch} fp32", timings["hf32"], timings["tri32"],
                          min_speedup=target("fp32"), floor_seconds=floor32, check=equal32, notes=note, **common))
    if "tri32p" in outputs:
        equal32p = describe_agreement(*token_agreement(outputs["hf32"], outputs["tri32p"], start))
        rows.append(speed_row(case, f"{model} b{batch} fp32 (packed)", timings["hf32"], timings["tri32p"],
                              min_speedup=target("fp32"), floor_seconds=floor32, check=equal32p, notes=note,
                              **common))
    if with_bf16:
        kept = describe_agreement(*token_agreement(outputs["tri32"], outputs["tri16"], start),
                                  "bf16 tokens = fp32")
        hf_kept = describe_agreement(*token_agreement(outputs["hf32"], outputs["hf16"], start),
                                     "transformers bf16 tokens = fp32")
        rows.append(speed_row(case, f"{model} b{batch} bf16 (packed) vs tf fp32", timings["hf32"], timings["tri16"],
                              min_speedup=target("bf16/fp32"), floor_seconds=floor32,
                              candidate_floor_seconds=floor16, check=kept, notes=note, **common))
        rows.append(speed_row(case, f"{model} b{batch} bf16 (packed) vs tf bf16", timings["hf16"], timings["tri16"],
                              baseline_name="transformers bf16", min_speedup=target("bf16/bf16"),
                              floor_seconds=floor16, check=hf_kept, notes=note, **common))
    return with_floors(rows, floors)


def cases() -> list[dict[str, Any]]:
    """name, params and whether --quick runs it (quick skips the biggest model)."""
    out = []
    for model in ("tiny-gpt2", "gpt2-124m", "bloom-560m", "tiny-t5", "tiny-bart", "flan-t5-small", "bart-base"):
        for batch in (1, 8):
            out.append(dict(name=f"generate/{model}/b{batch}", run="generation:run",
                            params=dict(model=model, batch=batch), quick=model != "bloom-560m"))
    return out

