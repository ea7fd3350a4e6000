"""CTranslate2 rows (issue 15, item 6): the fastest CPU engine beside transformers and triformers, same weights.

One process per model, batch 1, greedy, every sequence forced to the same length: transformers fp32 (the
baseline), triformers fp32 and int8 (`quantize="int8"`), CTranslate2 fp32 and int8 (`compute_type`), timed
interleaved. CTranslate2 gets the same random checkpoint folder through its `TransformersConverter`
(which imports transformers; the conversion is not timed). Its converter needs a tokenizer for the
vocabulary, so a word-level one that names each id ("t123") is saved beside linked weights; prompts are
passed to it as those names, so all three libraries see the same ids.

Rows: triformers fp32 / int8 against transformers fp32, then triformers against CTranslate2 in the same
precision (CTranslate2 as the baseline; its own speed-up over transformers is in the check column). When
`ctranslate2` is not importable the case is one skipped row saying so; when triformers lacks the dialect
(the Llama shape before issue 15's dialects land), CTranslate2's rows keep their figures with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..harness import (Row, Settings, Skip, baseline_only_row, describe_agreement, interleaved,
                       measure_floors, speed_row, token_agreement, with_floors)
from .common import (build_checkpoint, decode_step_bytes, family, hf_config, load_transformers, load_triformers,
                     log, random_ids, temporary_folder)
from .generation import NEW_TOKENS, PROMPT, QUICK_NEW_TOKENS
from .modern import have_dialect

MODELS = ("gpt2-124m", "flan-t5-small", "bart-base", "smollm2-135m")


def require_ctranslate2() -> None:
    try:
        import ctranslate2  # noqa: F401
    except ImportError as error:
        raise Skip(f"ctranslate2 is not importable ({error}); "
                   "`pip install ctranslate2==4.8.5` adds these rows") from None


# config keys that CTranslate2 4.8.5's loaders read but transformers 5 no longer writes: (model_type, key, value)
LEGACY_KEYS = (("bart", "normalize_before", False),)  # BART is post-norm


def convert(folder: Path, out: Path) -> Path:
    """The checkpoint in `folder` as a CTranslate2 model in `out` (fp32 weights; int8 is chosen at load).

    The converter reads a copy of the folder (the weights linked, config.json given the legacy keys
    above), so the folder the other libraries load stays as transformers wrote it.
    """
    import json

    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer, models
    from transformers import AutoConfig, PreTrainedTokenizerFast
    config = AutoConfig.from_pretrained(folder)
    source = out.with_name(out.name + "-source")
    source.mkdir()
    for path in folder.iterdir():
        if path.is_file() and path.name != "config.json":
            (source / path.name).symlink_to(path)
    data = json.loads((folder / "config.json").read_text())
    data.update({key: value for model_type, key, value in LEGACY_KEYS if model_type == config.model_type})
    (source / "config.json").write_text(json.dumps(data, indent=2))
    name = lambda key: None if getattr(config, key, None) is None else f"t{getattr(config, key)}"  # noqa: E731
    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(config.vocab_size)}, unk_token="t0"))
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="t0", bos_token=name("bos_token_id"),
                            eos_token=name("eos_token_id"), pad_token=name("pad_token_id")).save_pretrained(source)
    TransformersConverter(str(source)).convert(str(out), force=True)
    return out


def generator(model_dir: Path, compute_type: str, threads: int, prompt: torch.Tensor, new: int) -> Callable:
    """Decoder-only: prompt + `new` greedy tokens, as transformers' generate returns them."""
    import ctranslate2
    engine = ctranslate2.Generator(str(model_dir), device="cpu", compute_type=compute_type, intra_threads=threads,
                                   inter_threads=1)
    tokens = [[f"t{int(i)}" for i in row] for row in prompt]

    def run() -> torch.Tensor:
        results = engine.generate_batch(tokens, max_length=new, min_length=new, sampling_topk=1, beam_size=1,
                                        include_prompt_in_result=False)
        return torch.cat([prompt, torch.tensor([r.sequences_ids[0] for r in results])], dim=1)
    return run


def translator(model_dir: Path, compute_type: str, threads: int, source: torch.Tensor, new: int,
               start_id: int) -> Callable:
    """Encoder-decoder: decoder start token + `new` greedy tokens, as transformers' generate returns them."""
    import ctranslate2
    engine = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute_type, intra_threads=threads,
                                    inter_threads=1)
    tokens = [[f"t{int(i)}" for i in row] for row in source]

    def run() -> torch.Tensor:
        results = engine.translate_batch(tokens, beam_size=1, max_decoding_length=new, min_decoding_length=new)
        ids = [[start_id] + [int(t[1:]) for t in r.hypotheses[0]] for r in results]
        return torch.tensor(ids)
    return run


def _generate(model, ids: torch.Tensor, new: int, pad: int) -> Callable:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False, num_beams=1, pad_token_id=pad)
    return run


def _triformers(model: str, folder: Path, ids: torch.Tensor, new: int, pad: int) -> tuple[dict[str, Callable], str]:
    """triformers fp32 and int8 contenders (int8 tried on one token first), or fewer and the reason."""
    from .int8 import _triformers_quantizes
    model_type = hf_config(model).model_type
    if not have_dialect(model_type):
        return {}, f"no {model_type!r} dialect yet"
    out = {"tri32": _generate(load_triformers(model, folder), ids, new, pad)}
    if not _triformers_quantizes():
        return out, "from_pretrained has no `quantize` option yet"
    int8 = load_triformers(model, folder, quantize="int8")
    try:
        _generate(int8, ids, 1, pad)()
    except Exception as error:  # a library bug is reported in the row, and the other rows still run
        return out, f"int8 generate failed: {type(error).__name__}: {error}"
    out["tri8"] = _generate(int8, ids, new, pad)
    return out, ""


def run(settings: Settings, model: str) -> list[Row]:
    require_ctranslate2()
    kind = family(model)
    prompt = PROMPT[kind]
    new = 4 if settings.smoke else (QUICK_NEW_TOKENS if settings.quick else NEW_TOKENS)[kind]
    case = f"ct2/{model}/b1"
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint and converting it for CTranslate2")
        build_checkpoint(model, folder)
        ct2_dir = convert(folder, folder / "ct2")
        hf = load_transformers(model, folder)
        config = hf.config
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        ids = random_ids(1, prompt, config.vocab_size)
        contenders: dict[str, Callable] = {"hf32": _generate(hf, ids, new, pad)}
        tri, reason = _triformers(model, folder, ids, new, pad)
        contenders.update(tri)
        for name, compute in (("ct32", "float32"), ("ct8", "int8")):
            contenders[name] = (generator(ct2_dir, compute, settings.threads, ids, new) if kind == "decoder" else
                                translator(ct2_dir, compute, settings.threads, ids, new, config.decoder_start_token_id))
        start = prompt if kind == "decoder" else 1
        self_positions = start + new / 2 if kind == "decoder" else 1 + new / 2
        cross = prompt if kind == "encoder-decoder" else 0
        bytes32, bytes8 = (decode_step_bytes(hf, 1, self_positions, cross, n) for n in (4, 1))  # int8: 1 byte/weight
        floors = measure_floors(settings.quick, settings.smoke)
        log(f"{case}: timing {', '.join(contenders)} ({new} new tokens, {settings.reps} reps)")
        timings, outputs = interleaved(contenders, settings, log)
    floor32, floor8 = (new * b / floors["read_bandwidth"] for b in (bytes32, bytes8))
    # transformers forces EOS at the last position where the config says so (BART); CTranslate2 does not
    end = -1 if getattr(config, "forced_eos_token_id", None) is not None else None
    note = (f"{kind}: {'prompt' if kind == 'decoder' else 'encoder input'} {prompt}, {new} new tokens forced, greedy"
            + ("; the last token is left out of the CTranslate2 checks (transformers forces EOS there)" if end else ""))

    def agree(name: str, what: str) -> str:
        ref, other = outputs["hf32"], outputs[name]
        if name.startswith("ct"):
            ref, other = ref[:, :end], other[:, :end]
        return describe_agreement(*token_agreement(ref, other, start), what)

    rows = []
    for name, label, floor in (("tri32", "fp32", floor32), ("tri8", "int8", floor8)):
        if name in timings:
            rows.append(speed_row(case, f"{model} b1 decode, triformers {label}", timings["hf32"], timings[name],
                                  work=new, unit="tok/s", floor_seconds=floor32, candidate_floor_seconds=floor,
                                  check=agree(name, "greedy tokens" if name == "tri32" else "int8 tokens = fp32"),
                                  notes=note))
    for ct, tri, label, floor in (("ct32", "tri32", "fp32", floor32), ("ct8", "tri8", "int8", floor8)):
        versus = timings["hf32"].median / timings[ct].median
        check = (f"CTranslate2 {label} = {versus:.2f}x transformers fp32; "
                 + agree(ct, "its tokens = transformers fp32" if label == "fp32" else "its int8 tokens = fp32"))
        baseline = f"CTranslate2 {label}"
        if tri in timings:
            row = speed_row(case, f"{model} b1 decode, triformers {label} vs CTranslate2 {label}", timings[ct],
                            timings[tri], work=new, unit="tok/s", baseline_name=baseline, floor_seconds=floor,
                            check=check, notes=note)
        else:
            row = baseline_only_row(case, f"{model} b1 decode, CTranslate2 {label}", timings[ct], reason, work=new,
                                    unit="tok/s", baseline_name=baseline, floor_seconds=floor, notes=note)
            row.check = check
        rows.append(row)
    return with_floors(rows, floors)


def cases() -> list[dict[str, Any]]:
    return [dict(name=f"ct2/{model}/b1", run="ct2:run", params=dict(model=model), quick=True) for model in MODELS]
