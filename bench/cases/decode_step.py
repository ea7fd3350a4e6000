"""One greedy decode step of a left-padded batch (Redesign item 5: masks prepared once per call).

Prompts of different lengths are left-padded into one batch, so every step of both libraries runs
with an attention mask. The time of a step is measured by difference, through the public `generate`
of each library: a run with 1 new token (the prompt pass, no decode step) and a run with 1 + STEPS
new tokens, timed interleaved in the same repetition; (long - short) / STEPS is one step, the prompt
pass cancelled out. Every row is forced to the same length (min_new_tokens = max_new_tokens). The floor
of a step is the bytes it must read (weights, output layer, KV cache) over the measured read bandwidth.
"""

from __future__ import annotations

from typing import Any

import torch

from ..harness import (Row, Settings, Skip, Timing, baseline_only_row, describe_agreement, interleaved,
                       measure_floors, speed_row, token_agreement, with_floors)
from .common import (build_checkpoint, decode_step_bytes, load_transformers, load_triformers, log, random_ids,
                     require_generate, temporary_folder)

PROMPT = 32  # the longest prompt; row b is PROMPT - 3 b tokens long, left-padded
STEPS = {"full": 64, "quick": 16, "smoke": 2}


def padded_prompts(batch: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, PROMPT) ids and mask, row b with 3 b pad positions on the left (never all padding)."""
    ids = random_ids(batch, PROMPT, vocab_size)
    mask = torch.ones_like(ids)
    for b in range(batch):
        mask[b, :min(3 * b, PROMPT - 1)] = 0
    return ids, mask


def _generator(model, ids: torch.Tensor, mask: torch.Tensor, new: int, pad: int):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False, num_beams=1, pad_token_id=pad)
    return run


def _per_step(timings: dict[str, Timing], name: str, steps: int) -> Timing:
    """Paired differences long - short of each repetition, per step."""
    long, short = timings[f"{name}:long"].samples, timings[f"{name}:short"].samples
    return Timing([(a - b) / steps for a, b in zip(long, short, strict=True)])


def run(settings: Settings, model: str, batch: int) -> list[Row]:
    steps = STEPS["smoke" if settings.smoke else "quick" if settings.quick else "full"]
    case = f"decode-step/{model}/b{batch}-padded"
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        models: dict[str, Any] = {"hf": load_transformers(model, folder)}
        reason = None
        try:
            models["tri"] = load_triformers(model, folder)
            require_generate(models["tri"])
        except Skip as skip:
            reason = str(skip)
            models.pop("tri", None)
    config = models["hf"].config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    ids, mask = padded_prompts(batch, config.vocab_size)
    contenders = {}
    for name, m in models.items():
        contenders[f"{name}:short"] = _generator(m, ids, mask, 1, pad)
        contenders[f"{name}:long"] = _generator(m, ids, mask, 1 + steps, pad)
    # the mean KV length over the timed steps, in positions per row (padding included: it is read too)
    step_bytes = decode_step_bytes(models["hf"], batch, PROMPT + 1 + steps / 2, 0, 4)
    log(f"{case}: measuring the machine floor")
    floors = measure_floors(settings.quick, settings.smoke)
    log(f"{case}: timing {', '.join(contenders)} ({steps} steps by difference, {settings.reps} reps)")
    timings, outputs = interleaved(contenders, settings, log)
    floor = step_bytes / floors["read_bandwidth"]
    note = (f"greedy decode step, prompts {PROMPT - 3 * (batch - 1)}..{PROMPT} tokens left-padded to {PROMPT}; "
            f"(time of 1 + {steps} new tokens - time of 1) / {steps}, paired per repetition")
    label = f"{model} b{batch} padded decode step fp32"
    hf_step = _per_step(timings, "hf", steps)
    if reason is not None:
        return with_floors([baseline_only_row(case, label, hf_step, reason, floor_seconds=floor, notes=note)], floors)
    check = describe_agreement(*token_agreement(outputs["hf:long"], outputs["tri:long"], PROMPT))
    return with_floors([speed_row(case, label, hf_step, _per_step(timings, "tri", steps), floor_seconds=floor,
                                  check=check, notes=note)], floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name=f"decode-step/{model}/b8-padded", run="decode_step:run", params=dict(model=model, batch=8),
                 quick=True) for model in ("tiny-gpt2", "gpt2-124m")]
