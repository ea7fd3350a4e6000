"""The steps of `generate` before decoding: merge the settings, sort the keywords, plan the stopping.

Settings are merged as transformers 5.24 merges them (`GenerationMixin._prepare_generation_config`): a
`generation_config` the caller passes is the base; every field it leaves unset comes from the model's
`generation_config`, then from transformers' global defaults; keyword arguments that are fields win over
both. Keywords that are no field are model inputs (`input_ids`, `attention_mask`, `decoder_input_ids`,
`encoder_outputs`), generate's own (`tokenizer`, triformers' `generator` / `seed`), or an error naming them.
Stopping follows transformers' criteria (`_get_stopping_criteria`): the length limit and the EOS ids are
checked inside the decoding loops; the rest (max_time, stop_strings, the caller's) run as a list, and a
criterion the caller passes replaces a built-in one of the same class, as transformers merges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from .config import FIELDS, GLOBAL_DEFAULTS, GenerationConfig
from .options import GenerationOptions
from .stopping import EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteriaList, StopStringCriteria

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "encoder_outputs")
IGNORED_INPUTS = ("token_type_ids",)  # tokenizers return them; they mean nothing to generation
OWN_ARGUMENTS = ("tokenizer", "generator", "seed")
REFUSED_INPUTS = {
    "inputs_embeds": "generation from embeddings is not implemented; pass input_ids",
    "decoder_inputs_embeds": "generation from embeddings is not implemented; pass decoder_input_ids",
    "past_key_values": "generate builds its own cache; continuing from a cache is not implemented",
    "cache": "generate builds its own cache; continuing from a cache is not implemented",
    "position_ids": "positions are derived from attention_mask",
    "decoder_attention_mask": "the decoder prompt is never padded in triformers' generate",
    "prefix_allowed_tokens_fn": "prefix-constrained decoding is not implemented",
    "assistant_model": "assisted generation is not implemented",
    "assistant_tokenizer": "assisted generation is not implemented",
    "negative_prompt_ids": "classifier-free guidance is not implemented",
    "negative_prompt_attention_mask": "classifier-free guidance is not implemented",
    "custom_generate": "custom generate functions are not run (triformers never runs code from the hub)",
    "trust_remote_code": "triformers never runs code from the hub",
}


def as_generation_config(value: Any) -> GenerationConfig:
    """A triformers GenerationConfig, or one copied from an object with `to_dict()` (transformers' own)."""
    if isinstance(value, GenerationConfig):
        return value.copy()
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return GenerationConfig.from_dict({k: v for k, v in value.to_dict().items() if not k.startswith("_")})
    raise InputError(f"generate: generation_config must be a GenerationConfig, got {type(value).__name__}")


def merge_config(model, generation_config: Any, kwargs: dict[str, Any]
                 ) -> tuple[GenerationConfig, dict[str, Any], bool, set[str]]:
    """(the merged config, the keywords that are no field, whether nobody set max_length, the fields the
    caller set)."""
    base = model.generation_config
    given_config = as_generation_config(generation_config) if generation_config is not None else None
    default_max_length = (kwargs.get("max_length") is None and base.max_length is None
                          and (given_config is None or given_config.max_length is None))
    config = given_config if given_config is not None else GenerationConfig()
    theirs = base.custom_entries()  # a checkpoint's own extra keys travel with model.generation_config
    unknown = [k for k, v in config.custom_entries().items() if k not in theirs or theirs[k] != v]
    if unknown:
        raise InputError(f"generate: generation_config has entries that are no GenerationConfig field: "
                         f"{sorted(unknown)}")
    # what the caller set (ids checked strictly): keywords, and a passed config's fields unlike the model's own
    given = {name for name in FIELDS if getattr(config, name) is not None
             and getattr(config, name) != getattr(base, name)} | (set(kwargs) & set(FIELDS))
    config.fill_unset(base.__dict__)  # the model's settings, then transformers' global defaults
    config.fill_unset(GLOBAL_DEFAULTS)
    rest = config.update(**kwargs)  # validates the merged whole once
    return config, rest, default_max_length, given


@dataclass
class Inputs:
    input_ids: torch.Tensor | None  # the prompt (decoder-only) or the encoder input; None with encoder_outputs
    attention_mask: torch.Tensor | None
    decoder_input_ids: torch.Tensor | None
    encoder_outputs: torch.Tensor | None  # (B, S, H) encoder states the caller computed
    batch_size: int
    tokenizer: Any
    generator: torch.Generator | None
    seed: int | None


def split_inputs(model, inputs: torch.Tensor | None, rest: dict[str, Any], bos_token_id: Any) -> Inputs:
    """Sort the keywords that are no GenerationConfig field; a prompt-less call starts from BOS."""
    refused = sorted(set(rest) & set(REFUSED_INPUTS))
    if refused:
        raise InputError(f"generate: {refused[0]} is not supported: {REFUSED_INPUTS[refused[0]]}")
    if rest.get("synced_gpus"):
        raise InputError("generate: synced_gpus is not supported (generation runs on one device)")
    unknown = sorted(set(rest) - set(MODEL_INPUTS) - set(IGNORED_INPUTS) - set(OWN_ARGUMENTS) - {"synced_gpus"})
    if unknown:
        raise InputError(f"generate: unknown arguments {unknown}")
    if inputs is not None and rest.get("input_ids") is not None:
        raise InputError("generate: inputs and input_ids were both given; pass the prompt once")
    input_ids = inputs if inputs is not None else rest.get("input_ids")
    encoded = _encoder_states(rest.get("encoder_outputs"))
    if encoded is not None and model.family != "encoder-decoder":
        raise InputError("generate: encoder_outputs is for encoder-decoder models")
    if input_ids is None and encoded is None:
        if not isinstance(bos_token_id, int):
            raise InputError("generate: without input_ids the prompt starts from bos_token_id, which is not set")
        batch = next((v.shape[0] for v in rest.values() if isinstance(v, torch.Tensor)), 1)
        input_ids = torch.full((batch, 1), bos_token_id, dtype=torch.long, device=model.device)
    decoder_ids = rest.get("decoder_input_ids")
    if decoder_ids is not None and model.family != "encoder-decoder":
        raise InputError("generate: decoder_input_ids is for encoder-decoder models; pass input_ids")
    batch = encoded.shape[0] if input_ids is None else input_ids.shape[0]
    return Inputs(input_ids, rest.get("attention_mask"), decoder_ids, encoded, batch, rest.get("tokenizer"),
                  rest.get("generator"), rest.get("seed"))


def _encoder_states(value: Any) -> torch.Tensor | None:
    """The hidden states of `encoder_outputs` (a model output with last_hidden_state, a dict, a tuple)."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = value.get("last_hidden_state")
    elif isinstance(value, (list, tuple)):
        value = value[0] if value else None
    else:
        value = getattr(value, "last_hidden_state", None)
    if not isinstance(value, torch.Tensor) or value.dim() != 3:
        raise InputError("generate: encoder_outputs must hold last_hidden_state, a (batch, length, hidden) tensor")
    return value


@dataclass
class Stopping:
    """What ends sequences: a total length, EOS ids, and the criteria checked each step (may be empty)."""

    max_length: int
    eos_token_ids: tuple[int, ...]
    criteria: StoppingCriteriaList


def plan_stopping(options: GenerationOptions, user: list | None, tokenizer: Any) -> Stopping:
    """transformers' criteria for these options, with the caller's merged in by class."""
    built: list = [MaxLengthCriteria(options.max_length)]
    if options.max_time is not None:
        built.append(MaxTimeCriteria(options.max_time))
    if options.stop_strings is not None:
        if tokenizer is None:
            raise InputError("generate: stop_strings needs the model's tokenizer: pass tokenizer=... to generate")
        built.append(StopStringCriteria(tokenizer, list(options.stop_strings)))
    if options.eos_token_ids:
        built.append(EosTokenCriteria(list(options.eos_token_ids)))
    user = list(user or [])
    for criterion in user:
        if not callable(criterion):
            raise InputError(f"generate: stopping_criteria holds {type(criterion).__name__}, which is not callable")
    merged = [next((c for c in user if type(c) is type(b)), b) for b in built]
    merged += [c for c in user if not any(c is m for m in merged)]
    max_length = next(c.max_length for c in merged if isinstance(c, MaxLengthCriteria))
    eos = next((c for c in merged if isinstance(c, EosTokenCriteria)), None)
    eos_ids = tuple(int(i) for i in eos.eos_token_id.tolist()) if eos is not None else ()
    rest = StoppingCriteriaList(c for c in merged if not isinstance(c, (MaxLengthCriteria, EosTokenCriteria)))
    return Stopping(int(max_length), eos_ids, rest)
