"""The arguments of `generate`, checked once and completed from the model config.

Names and defaults follow transformers' `GenerationConfig` (v5.24): special tokens that the caller
leaves out come from the model config; `pad_token_id` falls back to the first EOS id, as there;
`max_new_tokens` wins over `max_length`, and with neither, 20 new tokens capped by the position
limit (transformers caps `max_length` at `max_position_embeddings` the same way).
"""

from __future__ import annotations

import logging

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError

DEFAULT_NEW_TOKENS = 20  # transformers' default max_length of 20 counted as new tokens, as it does
IGNORED = ("token_type_ids",)  # tokenizers return them; they mean nothing to generation
# Models without a position table (T5's relative buckets, BLOOM's ALiBi) have no length limit of their
# own; prompt + new tokens beyond this are refused rather than sizing a KV cache nothing can allocate.
MAX_UNBOUNDED_POSITIONS = 2**20
MAX_SEQUENCES = 4096  # num_beams, num_return_sequences: each is a row of the KV cache
MIN_FACTOR = torch.finfo(torch.float32).tiny  # a temperature / repetition penalty below this is 0 in float32
MAX_SEED = 2**64 - 1  # torch.Generator seeds are 64-bit
# transformers' names: "dynamic" reads the written prefix of the preallocated cache (the CPU default),
# "static" all of its slots with the unwritten ones masked, so that every step has the same shapes
CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")

logger = logging.getLogger("triformers")


@dataclass
class GenerationOptions:
    """Everything one `generate` call does, validated; token ids are resolved from the config."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    eos_token_ids: tuple[int, ...] = ()  # empty: nothing stops a sequence before max_new_tokens
    pad_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    decoder_start_token_id: int | None = None
    use_cache: bool = True
    static_cache: bool = False  # cache_implementation="static": every step reads all slots (fixed shapes)
    generator: torch.Generator | None = None


def _ids(value: Any, name: str, vocab_size: int) -> tuple[int, ...]:
    """An id or a list of ids -> a tuple, each checked against the vocabulary."""
    if value is None:
        return ()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < vocab_size:
            raise InputError(f"generate: {name} must be token ids in 0..{vocab_size - 1}, got {value!r}")
    return tuple(int(v) for v in values)


def _config_ids(given: Any, from_config: Any, name: str, vocab_size: int) -> tuple[int, ...]:
    """Ids the caller gave are checked strictly; ids from the config outside the vocabulary (a config
    copied from a bigger model, say) can never be generated, so they are dropped with a warning."""
    if given is not None:
        return _ids(given, name, vocab_size)
    values = [] if from_config is None else list(from_config) if isinstance(from_config, (list, tuple)) \
        else [from_config]
    kept = tuple(v for v in values if isinstance(v, int) and 0 <= v < vocab_size)
    if len(kept) < len(values):
        logger.warning("generate: ignoring config %s %r outside the vocabulary (0..%d)", name, from_config,
                       vocab_size - 1)
    return kept


def _one_id(value: Any, name: str, vocab_size: int) -> int | None:
    ids = _ids(value, name, vocab_size)
    if len(ids) > 1:
        raise InputError(f"generate: {name} must be one token id, got {value!r}")
    return ids[0] if ids else None


def _int(value: Any, name: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputError(f"generate: {name} must be an integer >= {low}, got {value!r}")
    return value


def _float(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"generate: {name} must be a finite number, got {value!r}")
    return float(value)


def resolve_options(model, prompt_length: int, *, max_new_tokens: int | None = None, min_new_tokens: int = 0,
                    do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, num_beams: int = 1, length_penalty: float = 1.0,
                    early_stopping: bool | str = False, num_return_sequences: int = 1,
                    repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, eos_token_id: Any = None,
                    pad_token_id: int | None = None, bos_token_id: int | None = None,
                    forced_bos_token_id: Any = None, forced_eos_token_id: Any = None,
                    decoder_start_token_id: int | None = None, max_length: int | None = None,
                    use_cache: bool = True, cache_implementation: str | None = None,
                    generator: torch.Generator | None = None, seed: int | None = None,
                    **unknown: Any) -> GenerationOptions:
    """Check every argument of `generate` and fill the unset ones from `model.config`.

    prompt_length: positions the decoder starts with (the prompt for decoder-only models, 1 for the
    decoder start token of encoder-decoder models), to turn `max_length` into new tokens.
    """
    unknown = {k: v for k, v in unknown.items() if k not in IGNORED}
    if unknown:
        raise InputError(f"generate: unknown arguments {sorted(unknown)}")
    config, V = model.config, model.config.vocab_size
    limit = model.max_length()

    if max_new_tokens is not None:
        new = _int(max_new_tokens, "max_new_tokens", 1)
    elif max_length is not None:
        new = _int(max_length, "max_length", 1) - prompt_length
        if new < 1:
            raise InputError(f"generate: max_length={max_length} leaves no room after the {prompt_length} prompt "
                             "positions; raise it or give max_new_tokens")
    else:
        new = DEFAULT_NEW_TOKENS if limit is None else max(1, min(DEFAULT_NEW_TOKENS, limit - prompt_length))
    if limit is None and prompt_length + new > MAX_UNBOUNDED_POSITIONS:
        raise InputError(f"generate: {prompt_length} prompt positions + {new} new tokens exceed "
                         f"{MAX_UNBOUNDED_POSITIONS} positions; lower max_new_tokens")
    if limit is not None and prompt_length + new > limit:
        raise InputError(f"generate: {prompt_length} prompt positions + {new} new tokens = {prompt_length + new} "
                         f"exceed the model's {limit} positions; shorten the prompt or lower max_new_tokens")

    sample = bool(do_sample)
    temperature = _float(temperature, "temperature")
    if sample and temperature <= 0:
        raise InputError(f"generate: temperature must be > 0 when sampling, got {temperature} "
                         "(for greedy decoding use do_sample=False)")
    if sample and temperature < MIN_FACTOR:  # scores are divided in float32, where this is 0
        raise InputError(f"generate: temperature {temperature} is below float32's smallest normal number "
                         f"({MIN_FACTOR:.3g}); for greedy decoding use do_sample=False")
    if top_k is not None and _int(top_k, "top_k", 0) == 0:
        top_k = None  # transformers: top_k=0 disables the filter
    if top_p is not None:
        top_p = _float(top_p, "top_p")
        if not 0 < top_p <= 1:
            raise InputError(f"generate: top_p must be in (0, 1], got {top_p}")
    beams = _int(num_beams, "num_beams", 1)
    returns = _int(num_return_sequences, "num_return_sequences", 1)
    if max(beams, returns) > MAX_SEQUENCES:
        raise InputError(f"generate: num_beams={beams} / num_return_sequences={returns}: at most {MAX_SEQUENCES}")
    if beams > 1 and returns > beams:
        raise InputError(f"generate: num_return_sequences={returns} is more than num_beams={beams}")
    if beams == 1 and not sample and returns > 1:
        raise InputError("generate: greedy search returns one sequence per prompt; num_return_sequences > 1 "
                         "needs do_sample=True or num_beams > 1")
    if early_stopping not in (True, False, "never"):
        raise InputError(f"generate: early_stopping must be True, False or 'never', got {early_stopping!r}")
    repetition_penalty = _float(repetition_penalty, "repetition_penalty")
    if not MIN_FACTOR <= repetition_penalty <= 1 / MIN_FACTOR:  # scores are divided / multiplied in float32
        raise InputError(f"generate: repetition_penalty must be in [{MIN_FACTOR:.3g}, {1 / MIN_FACTOR:.3g}] "
                         f"(> 0 and finite in float32), got {repetition_penalty}")
    if cache_implementation not in CACHE_IMPLEMENTATIONS:
        raise InputError(f"generate: cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, "
                         f"got {cache_implementation!r}")
    if generator is not None and seed is not None:
        raise InputError("generate: give either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generate: generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        if _int(seed, "seed", 0) > MAX_SEED:
            raise InputError(f"generate: seed must be an integer in 0..2**64-1, got {seed!r}")
        generator = torch.Generator(device=model.device).manual_seed(seed)

    eos = _config_ids(eos_token_id, config.eos_token_id, "eos_token_id", V)
    # finished rows go on with the pad id, fed back to the model: a config's pad outside the vocabulary
    # is dropped (with a warning), as its other ids are
    pad = _one_id(pad_token_id, "pad_token_id", V) if pad_token_id is not None else \
        next(iter(_config_ids(None, config.pad_token_id, "pad_token_id", V)), None)
    if pad is None and eos:
        pad = eos[0]  # transformers: "Setting pad_token_id to eos_token_id"
    start = None
    if model.family == "encoder-decoder":
        start = _one_id(decoder_start_token_id if decoder_start_token_id is not None
                        else config.decoder_start_token_id, "decoder_start_token_id", V)
        if start is None:  # transformers falls back to bos_token_id
            start = _one_id(bos_token_id if bos_token_id is not None else config.bos_token_id, "bos_token_id", V)
        if start is None:
            raise InputError("generate: an encoder-decoder model needs decoder_start_token_id (or bos_token_id)")
    return GenerationOptions(
        max_new_tokens=new, min_new_tokens=_int(min_new_tokens, "min_new_tokens", 0), do_sample=sample,
        temperature=temperature, top_k=top_k, top_p=top_p, num_beams=beams,
        length_penalty=_float(length_penalty, "length_penalty"), early_stopping=early_stopping,
        num_return_sequences=returns, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=_int(no_repeat_ngram_size, "no_repeat_ngram_size", 0), eos_token_ids=eos,
        pad_token_id=pad,
        forced_bos_token_id=_one_id(forced_bos_token_id if forced_bos_token_id is not None
                                    else config.forced_bos_token_id, "forced_bos_token_id", V),
        forced_eos_token_ids=_config_ids(forced_eos_token_id, config.forced_eos_token_id, "forced_eos_token_id", V),
        decoder_start_token_id=start, use_cache=bool(use_cache), static_cache=cache_implementation == "static",
        generator=generator,
    )


def eos_tensor(options: GenerationOptions, device: torch.device) -> torch.Tensor | None:
    """The EOS ids as a tensor (None when nothing stops a sequence early)."""
    return torch.tensor(options.eos_token_ids, device=device) if options.eos_token_ids else None
