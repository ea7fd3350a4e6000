"""GGUF files (issue 12, item 4): the real SmolLM2-135M-Instruct Q4_1 file, loaded and decoded by both libraries.

Loading: `AutoTokenizer.from_pretrained(folder, gguf_file=...)` and `AutoModelForCausalLM.from_pretrained(folder,
gguf_file=...)` (dequantized fp32 in both), interleaved in one process. Decoding at batch 1 and 8 (issue 15,
item 6): transformers fp32 and bf16 (the GGUF dequantized, the only way it runs one on CPU) against triformers
fp32, bf16 (packed), int8 and, at batch 1, int4 (at batch 8 packed fp32), all from the same file, with the
share of the memory-bandwidth floor (modern.decode_rows). The model rows need the llama dialect; without it
they are skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..harness import Row, Settings, Skip, interleaved, skipped_row, speed_row
from .common import log
from .modern import decode_rows, have_dialect

ROOT = Path(__file__).resolve().parent.parent.parent
FILE = ROOT / ".assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _file() -> Path:
    if not FILE.exists():
        raise Skip(f"{FILE} is missing: run `bash scripts/fetch_assets.sh .assets`")
    return FILE


def run_loading(settings: Settings) -> list[Row]:
    import transformers

    import triformers
    from triformers.dialects import DIALECTS

    path, case = _file(), "gguf/smollm2/load"
    folder, name = str(path.parent), path.name
    tokenizers = {"transformers": lambda: transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name),
                  "triformers": lambda: triformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)}
    timings, _ = interleaved(tokenizers, settings, log)
    rows = [speed_row(case, "AutoTokenizer.from_pretrained(gguf_file=) SmolLM2 (49152 tokens, 48900 merges)",
                      timings["transformers"], timings["triformers"], baseline_name="transformers", min_speedup=1.0)]
    label = "AutoModelForCausalLM.from_pretrained(gguf_file=) SmolLM2 Q4_1 -> fp32"
    if "llama" not in DIALECTS:
        return rows + [skipped_row(case, label, "the llama dialect is not in triformers yet")]
    models = {"transformers": lambda: transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name),
              "triformers": lambda: triformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)}
    timings, _ = interleaved(models, Settings(settings.quick, settings.threads, min(settings.reps, 3)), log)
    return rows + [speed_row(case, label, timings["transformers"], timings["triformers"], baseline_name="transformers",
                             min_speedup=1.0)]


def run_decode(settings: Settings, batch: int) -> list[Row]:
    import transformers

    import triformers

    path, case = _file(), f"gguf/smollm2/decode-b{batch}"
    if not have_dialect("llama"):
        raise Skip("the llama dialect is not in triformers yet (it lands with issue 15's dialects)")
    log(f"{case}: loading {path.name} (dequantized to fp32) in transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    variants = ("tri32", "tri16", "tri8", "tri4") if batch == 1 else ("tri32", "tri32p", "tri16", "tri8")
    return decode_rows(case, "SmolLM2-135M (GGUF Q4_1)", hf,
                       lambda **kwargs: triformers.AutoModelForCausalLM.from_pretrained(path, **kwargs), batch,
                       settings, variants, note="real weights, dequantized from the GGUF file by both libraries")


def cases() -> list[dict[str, Any]]:
    return [dict(name="gguf/smollm2/load", run="gguf:run_loading", params={}, quick=True),
            dict(name="gguf/smollm2/decode-b1", run="gguf:run_decode", params=dict(batch=1), quick=False),
            dict(name="gguf/smollm2/decode-b8", run="gguf:run_decode", params=dict(batch=8), quick=False)]
