"""Today's decoders (issue 15, item 6): greedy decode of Llama / Qwen2-shaped models in every precision.

One process per case: transformers fp32 and bf16 against triformers fp32, bf16 (`pack_weights()`, as the
README advises), int8 (`quantize="int8"`) and, where the case asks, int4 and packed fp32 — all timed
interleaved, every sequence forced to the same length. The floor of a step is the bytes it must read
(weights in that precision, a tied embedding once as the output layer, plus the KV cache of the kv heads)
over the read bandwidth measured in this process. `decode_rows` is shared with the real SmolLM2 GGUF
cases in gguf.py; the Qwen2.5-0.5B-shaped case here uses random weights at the real size.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..harness import (Row, Settings, Skip, describe_agreement, interleaved, measure_floors, speed_row,
                       token_agreement, with_floors)
from .common import (build_checkpoint, hf_config, kv_dims, load_transformers, load_triformers, log, random_ids,
                     temporary_folder)

PROMPT, NEW_TOKENS, QUICK_NEW_TOKENS = 32, 64, 16

# triformers variant -> (label, how to load it, bytes per weight, bytes per KV element)
VARIANTS: dict[str, tuple[str, dict[str, Any], float, int]] = {
    "tri32": ("fp32", {}, 4, 4),
    "tri32p": ("fp32 (packed)", {}, 4, 4),
    "tri16": ("bf16 (packed)", {"dtype": torch.bfloat16}, 2, 2),
    "tri8": ("int8", {"quantize": "int8"}, 1, 4),
    "tri4": ("int4", {"quantize": "int4"}, 0.6, 4),  # int4: codes + bf16 scales, int8 output layer
}
PACKED = {"tri32p", "tri16"}


def target(batch: int, variant: str) -> float:
    """Issue 15's minimums over transformers fp32: 1.5x in fp32 and 2.5x in bf16 / int8 at batch 1, 2x at batch 8."""
    if batch > 1:
        return 2.0
    return 1.5 if variant.startswith("tri32") else 2.5 if variant in ("tri16", "tri8") else 1.0


def have_dialect(model_type: str) -> bool:
    from triformers.dialects import DIALECTS
    return model_type in DIALECTS


def _generator(model, ids: torch.Tensor, new: int, pad: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False, num_beams=1, pad_token_id=pad)
    return run


def step_bytes(hf_model, batch: int, positions: float, weight_bytes: float, kv_bytes: int) -> float:
    """Bytes one decode step reads: every matrix once (a tied embedding counts as the output layer) + KV cache."""
    weights = sum(p.numel() for p in hf_model.parameters() if p.dim() == 2)  # parameters() lists a tied one once
    layers, width = kv_dims(hf_model.config)
    return weights * weight_bytes + 2 * layers * batch * positions * width * kv_bytes


def decode_rows(case: str, title: str, hf32, load: Callable[..., Any], batch: int, settings: Settings,
                variants: tuple[str, ...], note: str = "") -> list[Row]:
    """Time transformers fp32 / bf16 and the triformers `variants` (keys of VARIANTS); one row each.

    load(**kwargs) returns a triformers model (kwargs: dtype= or quantize=), hf32 the transformers fp32 one.
    """
    new = 4 if settings.smoke else QUICK_NEW_TOKENS if settings.quick else NEW_TOKENS
    pad = hf32.config.pad_token_id if hf32.config.pad_token_id is not None else hf32.config.eos_token_id
    ids = random_ids(batch, PROMPT, hf32.config.vocab_size)
    contenders = {"hf32": _generator(hf32, ids, new, pad),
                  "hf16": _generator(copy.deepcopy(hf32).to(torch.bfloat16), ids, new, pad)}
    for name in variants:
        model = load(**VARIANTS[name][1])
        contenders[name] = _generator(model.pack_weights() if name in PACKED else model, ids, new, pad)
    floors = measure_floors(settings.quick, settings.smoke)
    log(f"{case}: timing {', '.join(contenders)} ({new} new tokens, {settings.reps} reps)")
    timings, outputs = interleaved(contenders, settings, log)
    positions = PROMPT + new / 2  # mean KV length over the steps

    def floor(weight_bytes: float, kv_bytes: int) -> float:
        return new * step_bytes(hf32, batch, positions, weight_bytes, kv_bytes) / floors["read_bandwidth"]

    text = f"prompt {PROMPT}, {new} new tokens forced, greedy, batch {batch}" + (f"; {note}" if note else "")
    rows = []
    for name in variants:
        label, _, weight_bytes, kv_bytes = VARIANTS[name]
        kept = describe_agreement(*token_agreement(outputs["hf32"], outputs[name], PROMPT),
                                  "greedy tokens" if name.startswith("tri32") else f"{label} tokens = fp32")
        rows.append(speed_row(case, f"{title} b{batch} decode, triformers {label}", timings["hf32"], timings[name],
                              work=batch * new, unit="tok/s", min_speedup=target(batch, name),
                              floor_seconds=floor(4, 4), candidate_floor_seconds=floor(weight_bytes, kv_bytes),
                              check=kept, notes=text))
    if "tri16" in variants:
        hf_kept = describe_agreement(*token_agreement(outputs["hf32"], outputs["hf16"], PROMPT),
                                     "transformers bf16 tokens = fp32")
        rows.append(speed_row(case, f"{title} b{batch} decode, triformers bf16 (packed) vs tf bf16", timings["hf16"],
                              timings["tri16"], work=batch * new, unit="tok/s", baseline_name="transformers bf16",
                              min_speedup=1.0, floor_seconds=floor(2, 2), check=hf_kept, notes=text))
    return with_floors(rows, floors)


def run_random(settings: Settings, model: str, batch: int) -> list[Row]:
    """A random checkpoint at the real size, loaded by both libraries from the same folder."""
    case = f"modern/{model}/b{batch}"
    model_type = hf_config(model).model_type
    if not have_dialect(model_type):
        raise Skip(f"triformers has no {model_type!r} dialect yet (it lands with issue 15's dialects)")
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        hf32 = load_transformers(model, folder)
        variants = ("tri32", "tri16", "tri8") + (("tri32p",) if batch > 1 else ())
        return decode_rows(case, f"{model} (random weights)", hf32,
                           lambda **kwargs: load_triformers(model, folder, **kwargs), batch, settings, variants)


def cases() -> list[dict[str, Any]]:
    return [dict(name="modern/qwen2.5-0.5b/b1", run="modern:run_random", params=dict(model="qwen2.5-0.5b", batch=1),
                 quick=False)]
