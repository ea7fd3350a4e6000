"""GPT-2 greedy decode at batch 1 with int8 weight-only quantization (issue 8).

triformers runs when its `from_pretrained` takes `quantize` ("int8"); CTranslate2 int8 joins only if
`ctranslate2` is importable (it is never installed by this suite). The baseline is transformers fp32
in the same process; the target is CTranslate2's tokens/s when it runs, else 2.3x transformers fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..harness import (Row, Settings, Skip, describe_agreement, interleaved, measure_floors, speed_row,
                       token_agreement, with_floors)
from .common import (build_checkpoint, decode_step_bytes, load_transformers, load_triformers, log, random_ids,
                     supports_keyword, temporary_folder)

PROMPT, NEW_TOKENS, QUICK_NEW_TOKENS = 32, 128, 32
TARGET_WITHOUT_CT2 = 2.3


def _triformers_quantizes() -> bool:
    import triformers
    from triformers.models.base import TransformerModel
    return (supports_keyword(triformers.AutoModelForCausalLM.from_pretrained, "quantize")
            or supports_keyword(TransformerModel.from_pretrained, "quantize"))


def _ctranslate2_generator(folder: Path, out: Path, threads: int, prompt: torch.Tensor, new: int) -> Callable:
    """CTranslate2 int8 over the same weights (converted as in ct2.py)."""
    from .ct2 import convert, generator
    return generator(convert(folder, out), "int8", threads, prompt, new)


def _generator(model, input_ids: torch.Tensor, new: int, pad: int) -> Callable:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new,
                                  min_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=pad)
    return run


def run(settings: Settings, model: str = "gpt2-124m") -> list[Row]:
    case = f"int8/{model}/b1"
    new = QUICK_NEW_TOKENS if settings.quick else NEW_TOKENS
    try:
        import ctranslate2  # noqa: F401
        have_ct2 = True
    except ImportError:
        have_ct2 = False
    quantizes = _triformers_quantizes()
    if not quantizes and not have_ct2:
        raise Skip("triformers from_pretrained has no `quantize` option yet, and ctranslate2 is not installed")
    notes = [] if have_ct2 else ["ctranslate2 not importable: no CTranslate2 row (not installed by the suite)"]
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        build_checkpoint(model, folder)
        hf = load_transformers(model, folder)
        pad = hf.config.eos_token_id
        ids = random_ids(1, PROMPT, hf.config.vocab_size)
        contenders: dict[str, Callable] = {"hf32": _generator(hf, ids, new, pad)}
        if quantizes:
            contenders["tri8"] = _generator(load_triformers(model, folder, quantize="int8"), ids, new, pad)
        else:
            notes.append("triformers has no `quantize` option yet")
        if have_ct2:
            try:
                contenders["ct2"] = _ctranslate2_generator(folder, folder / "ct2", settings.threads, ids, new)
            except Exception as error:  # an optional comparator: report why it could not run, go on
                notes.append(f"CTranslate2 could not run: {type(error).__name__}: {error}")
        step_bytes = decode_step_bytes(hf, 1, PROMPT + new / 2, 0, 1)  # int8 weights: one byte each
        floors = measure_floors(settings.quick, settings.smoke)
        log(f"{case}: timing {', '.join(contenders)} ({new} new tokens, {settings.reps} reps)")
        timings, outputs = interleaved(contenders, settings, log)
    floor8 = new * step_bytes / floors["read_bandwidth"]
    floor32 = 4 * floor8
    note = "; ".join([f"prompt {PROMPT}, {new} new tokens forced, greedy; int8 floor {step_bytes / 1e6:.0f} MB/step"]
                     + notes)
    rows = []
    for name, label in (("tri8", "triformers int8"), ("ct2", "CTranslate2 int8")):
        if name not in timings:
            continue
        kept = describe_agreement(*token_agreement(outputs["hf32"], outputs[name], PROMPT), "int8 tokens = fp32")
        row = speed_row(case, f"{model} b1 decode, {label}", timings["hf32"], timings[name], work=new, unit="tok/s",
                        floor_seconds=floor32, candidate_floor_seconds=floor8, check=kept, notes=note)
        if name == "tri8":
            if "ct2" in timings:  # the target is CTranslate2's speed in the same run
                needed = timings["hf32"].median / timings["ct2"].median
                row.target, row.met = f">= CTranslate2 ({needed:.2f}x)", row.speedup >= needed
                row.min_speedup = needed
            else:
                row.target, row.met = f">={TARGET_WITHOUT_CT2:g}x", row.speedup >= TARGET_WITHOUT_CT2
                row.min_speedup = TARGET_WITHOUT_CT2
        rows.append(row)
    if not rows:
        raise Skip("; ".join(notes))
    return with_floors(rows, floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name="int8/gpt2-124m/b1", run="int8:run", params={}, quick=True)]
