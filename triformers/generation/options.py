"""The settings of one `generate` call, checked once: a merged `GenerationConfig` -> `GenerationOptions`.

The lengths are transformers' (v5.24 `_prepare_generated_length`): `max_new_tokens` wins; else a `max_length`
someone set counts the decoder's positions (the prompt of a decoder-only model, the decoder start token
of an encoder-decoder); with neither, 20 new tokens capped by the model's positions. `min_new_tokens`
wins over `min_length` the same way. `pad_token_id` falls back to the first EOS id, as there.
Every field transformers has is either honoured here or refused by name (`REFUSED`); the assistant
fields do nothing without an assistant model, in transformers too, and are accepted as such.
Ids the caller gave are checked strictly; ids from the model's own config outside its vocabulary (a
config copied from a bigger model) can never be generated, so they are dropped with a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import InputError
from .config import GenerationConfig

# Models without a position table (T5's relative buckets, BLOOM's ALiBi) have no length limit of their
# own; prompt + new tokens beyond this are refused rather than sizing a KV cache nothing can allocate.
MAX_UNBOUNDED_POSITIONS = 2**20
MAX_SEQUENCES = 4096  # num_beams, num_return_sequences: each is a row of the KV cache
MIN_FACTOR = torch.finfo(torch.float32).tiny  # a temperature / repetition penalty below this is 0 in float32
MAX_SEED = 2**64 - 1  # torch.Generator seeds are 64-bit
DEFAULT_NEW_TOKENS = 20

logger = logging.getLogger("triformers")


def _on(value: Any) -> bool:
    return value is not None and value is not False and value != 0


# field -> (when it is refused, why): what triformers does not implement
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "use_mtp": (_on, "multi-token prediction is not implemented"),
    "cache_config": (lambda v: v is not None, "triformers sizes its one preallocated cache per call"),
    "max_cache_len": (lambda v: v is not None, "triformers sizes its one preallocated cache per call"),
    "cache_implementation": (lambda v: v not in (None, "dynamic", "static"),
                             "triformers' cache is preallocated per call: \"dynamic\" reads its written prefix, "
                             "\"static\" all of its slots (fixed shapes)"),
    "token_healing": (_on, "token healing is not implemented"),
    "guidance_scale": (lambda v: v is not None and v != 1, "classifier-free guidance is not implemented"),
    "watermarking_config": (lambda v: v is not None, "watermarking is not implemented"),
    "output_attentions": (_on, "attention weights are not returned by generate yet"),
    "output_hidden_states": (_on, "hidden states are not returned by generate yet"),
    "is_assistant": (_on, "assisted generation is not implemented"),
    "prompt_lookup_num_tokens": (lambda v: v is not None, "prompt lookup decoding is not implemented"),
    "assistant_early_exit": (lambda v: v is not None, "assisted generation is not implemented"),
    "compile_config": (lambda v: v is not None, "generate never compiles; torch.compile the model yourself"),
    "continuous_batching_config": (lambda v: v is not None, "continuous batching lives in triformers' server"),
    "low_memory": (_on, "sequential beam search is not implemented (transformers removed it too)"),
    "penalty_alpha": (lambda v: v is not None, "contrastive search is not implemented (transformers moved it "
                                               "to the hub)"),
    "dola_layers": (lambda v: v is not None, "DoLa decoding is not implemented (transformers moved it to the hub)"),
    "diversity_penalty": (_on, "group (diverse) beam search is not implemented"),
    "num_beam_groups": (lambda v: v is not None and v != 1, "group (diverse) beam search is not implemented"),
    "constraints": (lambda v: v is not None, "constrained beam search is not implemented"),
    "force_words_ids": (lambda v: v is not None, "constrained beam search is not implemented"),
    "prefill_chunk_size": (lambda v: v is not None, "the prompt is fed in one piece"),
}


@dataclass
class GenerationOptions:
    """Everything one `generate` call does, validated; token ids are resolved."""

    max_new_tokens: int = 0  # how many steps at most
    max_length: int = 0  # decoder positions at the end, as transformers counts them (prompt + max_new_tokens)
    min_length: int = 0  # EOS is banned while the sequence is shorter than this (decoder positions)
    min_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    top_h: float | None = None
    typical_p: float | None = None
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    encoder_repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    bad_words_ids: tuple[tuple[int, ...], ...] | None = None
    sequence_bias: dict[tuple[int, ...], float] | None = None
    suppress_tokens: tuple[int, ...] | None = None
    begin_suppress_tokens: tuple[int, ...] | None = None
    remove_invalid_values: bool = False
    exponential_decay_length_penalty: tuple[int, float] | None = None
    renormalize_logits: bool = False
    eos_token_ids: tuple[int, ...] = ()  # empty: nothing stops a sequence before max_new_tokens
    pad_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    decoder_start_token_id: int | None = None
    use_cache: bool = True
    static_cache: bool = False  # cache_implementation="static": every step reads all slots (fixed shapes)
    max_time: float | None = None
    stop_strings: tuple[str, ...] | None = None
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False
    generator: torch.Generator | None = None


def _integer(value: Any, name: str, low: int) -> int:
    """An int (an integral float too, as 10.0) >= low."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputError(f"generate: {name} must be an integer >= {low}, got {value!r}")
    return value


def _float(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"generate: {name} must be a finite number, got {value!r}")
    return float(value)


def _fraction(value: Any, name: str, low_open: bool, high: float = 1.0, high_open: bool = False) -> float:
    value = _float(value, name)
    if (value <= 0 if low_open else value < 0) or (value >= high if high_open else value > high):
        bounds = f"{'(' if low_open else '['}0, {high:g}{')' if high_open else ']'}"
        raise InputError(f"generate: {name} must be in {bounds}, got {value}")
    return value


class _Ids:
    """Token-id checks against the vocabulary: strict for what the caller set, lenient for the model's config."""

    def __init__(self, vocab_size: int, given: set[str]):
        self.V, self.given = vocab_size, given

    def many(self, value: Any, name: str) -> tuple[int, ...]:
        if value is None:
            return ()
        values = value.tolist() if isinstance(value, torch.Tensor) else value
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
        good = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < self.V]
        if len(good) < len(values):
            if name in self.given:
                raise InputError(f"generate: {name} must be token ids in 0..{self.V - 1}, got {value!r}")
            logger.warning("generate: ignoring the config's %s %r outside the vocabulary (0..%d)", name, value,
                           self.V - 1)
        return tuple(good)

    def one(self, value: Any, name: str) -> int | None:
        ids = self.many(value, name)
        if len(ids) > 1:
            raise InputError(f"generate: {name} must be one token id, got {value!r}")
        return ids[0] if ids else None

    def sequences(self, value: Any, name: str) -> tuple[tuple[int, ...], ...]:
        if not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(s, (list, tuple)) and len(s) > 0 for s in value):
            raise InputError(f"generate: {name} must be a non-empty list of non-empty lists of token ids, "
                             f"got {value!r}")
        self.given.add(name)
        return tuple(self.many(s, name) for s in value)


def refuse_unsupported(config: GenerationConfig) -> None:
    for name, (refused, why) in REFUSED.items():
        value = getattr(config, name, None)
        if refused(value):
            raise InputError(f"generate: {name}={value!r} is not supported: {why}")


def resolve_options(model, config: GenerationConfig, *, given: set[str], generator: torch.Generator | None = None,
                    seed: int | None = None) -> GenerationOptions:
    """Check a merged config (every field set, by the caller, the model or the global defaults) and resolve it;
    the lengths come after, from the decoder prompt (`apply_lengths`).

    given: the fields the caller set (their token ids are checked strictly).
    """
    refuse_unsupported(config)
    ids = _Ids(model.config.vocab_size, set(given))
    options = GenerationOptions(**_search(config), **_penalties(config, ids), **_special_tokens(model, config, ids))
    if options.exponential_decay_length_penalty is not None and not options.eos_token_ids:
        raise InputError("generate: exponential_decay_length_penalty needs eos_token_id (the tokens it favours)")
    if config.stop_strings is not None:
        strings = [config.stop_strings] if isinstance(config.stop_strings, str) else config.stop_strings
        if not isinstance(strings, (list, tuple)) or not strings or not all(isinstance(s, str) and s for s in strings):
            raise InputError(f"generate: stop_strings must be a string or a list of strings, got {strings!r}")
        options.stop_strings = tuple(strings)
    if config.max_time is not None:
        options.max_time = _float(config.max_time, "max_time")
    options.generator = _generator(model, generator, seed)
    return options


def apply_lengths(options: GenerationOptions, model, config: GenerationConfig, prompt_length: int,
                  default_max_length: bool) -> None:
    """Set the length fields for a decoder prompt of `prompt_length` positions (default_max_length: nobody
    set max_length)."""
    for name, value in _lengths(model, config, prompt_length, default_max_length).items():
        setattr(options, name, value)
    if options.min_length > options.max_length:
        logger.warning("generate: min_length %d is beyond the maximum length %d", options.min_length,
                       options.max_length)


def check_positions(model, prompt_length: int, new: int) -> None:
    """Refuse a prompt + new tokens beyond the model's positions (or beyond any cache one can allocate)."""
    limit = model.max_length()  # None: no position table
    if limit is None and prompt_length + new > MAX_UNBOUNDED_POSITIONS:
        raise InputError(f"generate: {prompt_length} prompt positions + {new} new tokens exceed "
                         f"{MAX_UNBOUNDED_POSITIONS} positions; lower max_new_tokens")
    if limit is not None and prompt_length + new > limit:
        raise InputError(f"generate: {prompt_length} prompt positions + {new} new tokens = {prompt_length + new} "
                         f"exceed the model's {limit} positions; shorten the prompt or lower max_new_tokens")


def _lengths(model, config: GenerationConfig, prompt_length: int, default_max_length: bool) -> dict[str, Any]:
    limit = model.max_length()  # None: no position table
    if config.max_new_tokens is not None:
        new = _integer(config.max_new_tokens, "max_new_tokens", 1)
    elif default_max_length:  # transformers: 20 new tokens, capped by the position table
        new = DEFAULT_NEW_TOKENS if limit is None else max(1, min(DEFAULT_NEW_TOKENS, limit - prompt_length))
    else:
        new = _integer(config.max_length, "max_length", 1) - prompt_length
        if new < 1:
            raise InputError(f"generate: max_length={config.max_length} leaves no room after the {prompt_length} "
                             "prompt positions; raise it or give max_new_tokens")
    check_positions(model, prompt_length, new)
    min_new = None if config.min_new_tokens is None else _integer(config.min_new_tokens, "min_new_tokens", 0)
    minimum = prompt_length + min_new if min_new is not None else _integer(config.min_length, "min_length", 0)
    return dict(max_new_tokens=new, max_length=prompt_length + new, min_length=minimum, min_new_tokens=min_new)


def _search(config: GenerationConfig) -> dict[str, Any]:
    sample = bool(config.do_sample)
    temperature = _float(config.temperature, "temperature")
    if sample and temperature <= 0:
        raise InputError(f"generate: temperature must be > 0 when sampling, got {temperature} "
                         "(for greedy decoding use do_sample=False)")
    if sample and temperature < MIN_FACTOR:  # scores are divided in float32, where this is 0
        raise InputError(f"generate: temperature {temperature} is below float32's smallest normal number "
                         f"({MIN_FACTOR:.3g}); for greedy decoding use do_sample=False")
    top_k = None if config.top_k is None else (_integer(config.top_k, "top_k", 0) or None)  # 0: no filter
    top_p = None if config.top_p is None else _fraction(config.top_p, "top_p", low_open=True)
    beams = _integer(config.num_beams, "num_beams", 1)
    returns = _integer(config.num_return_sequences, "num_return_sequences", 1)
    if max(beams, returns) > MAX_SEQUENCES:
        raise InputError(f"generate: num_beams={beams} / num_return_sequences={returns}: at most {MAX_SEQUENCES}")
    if beams > 1 and returns > beams:
        raise InputError(f"generate: num_return_sequences={returns} is more than num_beams={beams}")
    if beams == 1 and not sample and returns > 1:
        raise InputError("generate: greedy search returns one sequence per prompt; num_return_sequences > 1 "
                         "needs do_sample=True or num_beams > 1")
    if config.early_stopping not in (True, False, "never"):
        raise InputError(f"generate: early_stopping must be True, False or 'never', got {config.early_stopping!r}")
    return dict(
        do_sample=sample, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=beams,
        num_return_sequences=returns, length_penalty=_float(config.length_penalty, "length_penalty"),
        early_stopping=config.early_stopping,
        min_p=None if config.min_p is None else _fraction(config.min_p, "min_p", low_open=False),
        top_h=None if config.top_h is None else _fraction(config.top_h, "top_h", low_open=True),
        typical_p=None if config.typical_p is None else _fraction(config.typical_p, "typical_p", low_open=True),
        epsilon_cutoff=_fraction(config.epsilon_cutoff, "epsilon_cutoff", low_open=False, high_open=True),
        eta_cutoff=_fraction(config.eta_cutoff, "eta_cutoff", low_open=False, high_open=True),
        use_cache=bool(config.use_cache), static_cache=config.cache_implementation == "static",
        output_scores=bool(config.output_scores),
        output_logits=bool(config.output_logits), return_dict_in_generate=bool(config.return_dict_in_generate),
        remove_invalid_values=bool(config.remove_invalid_values), renormalize_logits=bool(config.renormalize_logits))


def _penalty(value: Any, name: str) -> float:
    value = _float(value, name)
    if not MIN_FACTOR <= value <= 1 / MIN_FACTOR:  # scores are divided / multiplied in float32
        raise InputError(f"generate: {name} must be in [{MIN_FACTOR:.3g}, {1 / MIN_FACTOR:.3g}] "
                         f"(> 0 and finite in float32), got {value}")
    return value


def _penalties(config: GenerationConfig, ids: _Ids) -> dict[str, Any]:
    out: dict[str, Any] = dict(
        repetition_penalty=_penalty(config.repetition_penalty, "repetition_penalty"),
        encoder_repetition_penalty=_penalty(config.encoder_repetition_penalty, "encoder_repetition_penalty"),
        no_repeat_ngram_size=_integer(config.no_repeat_ngram_size, "no_repeat_ngram_size", 0),
        encoder_no_repeat_ngram_size=_integer(config.encoder_no_repeat_ngram_size, "encoder_no_repeat_ngram_size", 0))
    if config.bad_words_ids is not None:
        out["bad_words_ids"] = ids.sequences(config.bad_words_ids, "bad_words_ids")
    if config.sequence_bias is not None:
        out["sequence_bias"] = _sequence_bias(config.sequence_bias, ids)
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        value = getattr(config, name)
        if value is not None:
            if not isinstance(value, (list, tuple)):
                raise InputError(f"generate: {name} must be a list of token ids, got {value!r}")
            ids.given.add(name)
            out[name] = ids.many(value, name)
    decay = config.exponential_decay_length_penalty
    if decay is not None:
        if not isinstance(decay, (list, tuple)) or len(decay) != 2:
            raise InputError(f"generate: exponential_decay_length_penalty must be (start_index, decay_factor), "
                             f"got {decay!r}")
        out["exponential_decay_length_penalty"] = (
            _integer(decay[0], "exponential_decay_length_penalty start_index", 0),
            _float(decay[1], "exponential_decay_length_penalty decay_factor"))
    return out


def _sequence_bias(value: Any, ids: _Ids) -> dict[tuple[int, ...], float]:
    """{(ids...): bias} or transformers' list form [[ids, bias], ...]."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, (list, tuple)) or not pairs or \
            not all(isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], (list, tuple)) and p[0]
                    for p in pairs):
        raise InputError("generate: sequence_bias must map non-empty tuples of token ids to floats "
                         f"({{(5, 6): -2.0}} or [[[5, 6], -2.0]]), got {value!r}")
    ids.given.add("sequence_bias")
    return {ids.many(list(s), "sequence_bias"): _float(b, "sequence_bias") for s, b in pairs}


def _special_tokens(model, config: GenerationConfig, ids: _Ids) -> dict[str, Any]:
    eos = ids.many(config.eos_token_id, "eos_token_id")
    # finished rows go on with the pad id, fed back to the model: a config's pad outside the vocabulary is
    # dropped (with a warning), as its other ids are
    pad = ids.one(config.pad_token_id, "pad_token_id")
    if pad is None and eos:
        pad = eos[0]  # transformers: "Setting pad_token_id to eos_token_id"
    start = None
    if model.family == "encoder-decoder":
        start = ids.one(config.decoder_start_token_id, "decoder_start_token_id")
        if start is None:  # transformers falls back to bos_token_id
            start = ids.one(config.bos_token_id, "bos_token_id")
        if start is None:
            raise InputError("generate: an encoder-decoder model needs decoder_start_token_id (or bos_token_id)")
    return dict(eos_token_ids=eos, pad_token_id=pad, decoder_start_token_id=start,
                forced_bos_token_id=ids.one(config.forced_bos_token_id, "forced_bos_token_id"),
                forced_eos_token_ids=ids.many(config.forced_eos_token_id, "forced_eos_token_id"))


def _generator(model, generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise InputError("generate: give either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generate: generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        if _integer(seed, "seed", 0) > MAX_SEED:
            raise InputError(f"generate: seed must be an integer in 0..2**64-1, got {seed!r}")
        generator = torch.Generator(device=model.device).manual_seed(int(seed))
    return generator


def eos_tensor(ids: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """Token ids as a tensor (None when there are none)."""
    return torch.tensor(ids, device=device) if ids else None
