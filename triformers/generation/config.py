"""`GenerationConfig`: transformers' generation settings object, field for field (v5.24).

As in transformers 5.24 (`generation/configuration_utils.py`) every field defaults to None, meaning "not
set": `generate` fills an unset field from the model's own `generation_config` and then from
`GLOBAL_DEFAULTS` (transformers' `_get_default_generation_params`), so a setting given nowhere ends as
transformers would end it. `generation_config.json` is read and written in transformers' layout: only the
fields that are set, sorted, two-space indented. `from_model_config` builds one from a config.json whose
generation settings predate generation_config.json (BART's `num_beams`, `min_length`, ...).
`validate` raises `InputError` naming the field where transformers' `validate` raises, and logs a
warning where transformers warns; `generate` itself refuses the fields triformers does not implement
(see `generation/options.py`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

GENERATION_CONFIG_NAME = "generation_config.json"
logger = logging.getLogger("triformers")

# transformers 5.24's GenerationConfig fields, in its order (all default to None)
FIELDS = (
    # length of the output
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "early_stopping", "max_time", "stop_strings",
    # strategy
    "do_sample", "num_beams", "use_mtp",
    # cache
    "use_cache", "cache_implementation", "cache_config", "max_cache_len",
    # logits manipulation
    "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "repetition_penalty", "encoder_repetition_penalty", "length_penalty", "no_repeat_ngram_size", "bad_words_ids",
    "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "sequence_bias",
    "token_healing", "guidance_scale", "watermarking_config",
    # outputs
    "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate",
    # special tokens
    "pad_token_id", "bos_token_id", "eos_token_id", "encoder_no_repeat_ngram_size", "decoder_start_token_id",
    # assisted generation
    "is_assistant", "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "prompt_lookup_num_tokens", "max_matching_ngram_size", "assistant_early_exit", "assistant_lookbehind",
    "target_lookbehind", "assistant_ensemble_weight", "speculation_type",
    # performance, deprecated
    "compile_config", "disable_compile", "continuous_batching_config", "low_memory", "penalty_alpha", "dola_layers",
    "diversity_penalty", "num_beam_groups", "constraints", "force_words_ids", "prefill_chunk_size",
)
METADATA = ("_from_model_config", "transformers_version")
# what `generate` uses for a field nobody set (transformers' `_get_default_generation_params`)
GLOBAL_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "min_length": 0, "do_sample": False, "use_cache": True, "early_stopping": False, "num_beams": 1,
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "repetition_penalty": 1.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "encoder_repetition_penalty": 1.0, "num_assistant_tokens": 20,
    "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.4, "assistant_lookbehind": 10,
    "target_lookbehind": 10, "num_beam_groups": 1, "diversity_penalty": 0.0,
}
CACHE_IMPLEMENTATIONS = ("static", "offloaded_static", "sliding_window", "hybrid", "hybrid_chunked",
                         "offloaded_hybrid", "offloaded_hybrid_chunked", "dynamic", "offloaded", "quantized", "paged")
# arguments of generate() itself, which transformers refuses to find inside a GenerationConfig
GENERATE_ARGUMENTS = ("logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus",
                      "assistant_model", "streamer", "negative_prompt_ids", "negative_prompt_attention_mask")
SAMPLING_ONLY = (("temperature", 1.0), ("top_p", 1.0), ("min_p", None), ("top_h", None), ("typical_p", 1.0),
                 ("top_k", 50), ("epsilon_cutoff", 0.0), ("eta_cutoff", 0.0))  # (field, value that does nothing)
BEAM_ONLY = (("early_stopping", False), ("length_penalty", 1.0))
EXTRA_OUTPUT_FLAGS = ("output_attentions", "output_hidden_states", "output_scores", "output_logits")
_WARNED: set[tuple[str, ...]] = set()


class GenerationConfig:
    """The settings of a `generate` call, with transformers' field names; unset fields are None."""

    extra_output_flags = EXTRA_OUTPUT_FLAGS

    def __init__(self, **kwargs: Any):
        user_set = set(kwargs)
        for name in FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        kwargs.pop("_commit_hash", None)
        self._from_model_config = kwargs.pop("_from_model_config", None)
        self.transformers_version = kwargs.pop("transformers_version", None)
        if not self._from_model_config:  # other entries are kept, as transformers keeps them (a file's own keys)
            for key, value in kwargs.items():
                setattr(self, key, value)
        elif kwargs.get("force_bos_token_to_be_generated", False):  # config.json of early BART checkpoints
            self.forced_bos_token_id = self.bos_token_id
        self._original_hash: int | None = None
        self.validate(user_set=user_set)

    # ---- validation ---------------------------------------------------------------------------------------
    def validate(self, strict: bool = False, user_set: set[str] | None = None) -> None:
        """InputError where transformers' `validate` raises; a warning (an InputError when `strict`) for the
        settings transformers calls minor issues: a sampling-only flag without `do_sample`, and the like."""
        if self.early_stopping not in (None, True, False, "never"):
            raise InputError(f"GenerationConfig: early_stopping must be True, False or 'never', got "
                             f"{self.early_stopping!r}")
        if self.max_new_tokens is not None and _number(self.max_new_tokens) and self.max_new_tokens <= 0:
            raise InputError(f"GenerationConfig: max_new_tokens must be an integer >= 1, got {self.max_new_tokens}")
        weight = self.assistant_ensemble_weight
        if weight is not None and not (_number(weight) and 0.0 < weight < 1.0):
            raise InputError(f"GenerationConfig: assistant_ensemble_weight must be in (0.0, 1.0), got {weight!r}")
        if self.cache_implementation is not None and self.cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise InputError(f"GenerationConfig: cache_implementation {self.cache_implementation!r} is not one of "
                             f"{CACHE_IMPLEMENTATIONS}")
        returns, beams = self.num_return_sequences, self.num_beams
        if _number(returns) and returns > 1:
            if (beams is None or beams == 1) and not self.do_sample:
                raise InputError(f"GenerationConfig: greedy search returns one sequence per prompt; "
                                 f"num_return_sequences={returns} needs do_sample=True or num_beams > 1")
            if _number(beams) and beams > 1 and returns > beams:
                raise InputError(f"GenerationConfig: num_return_sequences={returns} is more than num_beams={beams}")
        self._check_forced_not_suppressed()
        for name in GENERATE_ARGUMENTS:
            if name in self.__dict__:
                raise InputError(f"GenerationConfig: {name!r} is an argument of generate(), not a GenerationConfig "
                                 "field; pass it to generate() directly")
        issues = self._minor_issues(user_set)
        if issues and strict:
            raise InputError("GenerationConfig is invalid:\n" + "\n".join(f"- {k}: {v}" for k, v in issues.items()))
        if issues and tuple(sorted(issues)) not in _WARNED:  # once per set of flags, as transformers warns once
            _WARNED.add(tuple(sorted(issues)))
            logger.warning("generation flags that will be ignored: %s", sorted(issues))

    def _check_forced_not_suppressed(self) -> None:
        if not isinstance(self.suppress_tokens, (list, tuple)):
            return
        for name in ("forced_bos_token_id", "forced_eos_token_id"):
            forced = getattr(self, name)
            if forced is None:
                continue
            forced = {forced} if isinstance(forced, int) else set(forced)
            if forced and forced <= set(self.suppress_tokens):
                raise InputError(f"GenerationConfig: every token of {name} ({sorted(forced)}) is also in "
                                 "suppress_tokens, which would leave no token to choose at that step")

    def _minor_issues(self, user_set: set[str] | None) -> dict[str, str]:
        def user(*names: str) -> bool:
            return user_set is None or all(n in user_set for n in names if getattr(self, n) is not None)

        issues = {}
        if self.do_sample is not True:
            for name, neutral in SAMPLING_ONLY:
                value = getattr(self, name)
                if value is not None and value != neutral and user("do_sample", name):
                    issues[name] = f"{name}={value!r} is only used when sampling (do_sample=True)"
        if self.num_beams is None or self.num_beams == 1:
            for name, neutral in BEAM_ONLY:
                value = getattr(self, name)
                if value is not None and value != neutral and user("num_beams", name):
                    issues[name] = f"{name}={value!r} is only used by beam search (num_beams > 1)"
        if self.return_dict_in_generate is not True:
            for name in EXTRA_OUTPUT_FLAGS:
                if getattr(self, name) is True:
                    issues[name] = f"{name}=True is only used with return_dict_in_generate=True"
        if _number(self.pad_token_id) and self.pad_token_id < 0:
            issues["pad_token_id"] = f"pad_token_id should be positive, got {self.pad_token_id}"
        return issues

    # ---- dictionaries and JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field (and any other entry), deep-copied."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "_original_hash"}

    def to_diff_dict(self) -> dict[str, Any]:
        """The entries that differ from `GenerationConfig()` (what generation_config.json holds)."""
        default = GenerationConfig().to_dict()
        return {k: v for k, v in self.to_dict().items()
                if k not in default or k == "transformers_version" or v != default[k]}

    def to_json_string(self, use_diff: bool = True, ignore_metadata: bool = False,
                       keys_to_pop: list[str] | None = None) -> str:
        config = self.to_diff_dict() if use_diff else self.to_dict()
        for key in (keys_to_pop or []) + (list(METADATA) if ignore_metadata else []):
            config.pop(key, None)
        if config.get("transformers_version") is None:
            config.pop("transformers_version", None)
        try:
            return json.dumps(_json_ready(config), indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:  # NaN / infinity, or an object JSON cannot hold
            raise InputError(f"GenerationConfig cannot be written as JSON: {err}") from None

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        from ..io.files import atomic_write

        atomic_write(Path(json_file_path), self.to_json_string(use_diff=use_diff).encode())

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> GenerationConfig | tuple:
        """A config from a dict (a parsed generation_config.json), `kwargs` overriding its entries; with
        `return_unused_kwargs=True`, also the kwargs that are no field (as transformers returns them)."""
        if not isinstance(config_dict, dict):
            raise InputError(f"GenerationConfig.from_dict takes a dict, got {type(config_dict).__name__}")
        return_unused = kwargs.pop("return_unused_kwargs", False)
        for key in ("_from_auto", "_from_pipeline"):
            kwargs.pop(key, None)
        config = cls(**{**config_dict, **kwargs})
        unused = config.update(**kwargs)
        return (config, unused) if return_unused else config

    @classmethod
    def from_model_config(cls, model_config: Any) -> GenerationConfig:
        """The generation settings of a model config (a config.json dict, or an object with `to_dict()`):
        its keys that are GenerationConfig fields, None values left out; a nested `decoder` / `generator` /
        `text_config` fills the fields still unset, as transformers does."""
        config_dict = dict(model_config if isinstance(model_config, dict) else model_config.to_dict())
        config_dict.pop("_from_model_config", None)
        config = cls.from_dict({k: v for k, v in config_dict.items() if v is not None}, _from_model_config=True)
        nested = next((config_dict[n] for n in ("decoder", "generator", "text_config")
                       if isinstance(config_dict.get(n), dict)), config_dict)
        for name in FIELDS:
            if getattr(config, name) is None and nested.get(name) is not None:
                setattr(config, name, nested[name])
        if not config.return_dict_in_generate and any(getattr(config, f, False) for f in EXTRA_OUTPUT_FLAGS):
            config.return_dict_in_generate = True
        config._original_hash = hash(config)
        return config

    def update(self, defaults_only: bool = False, allow_custom_entries: bool = False, **kwargs: Any) -> dict:
        """Set the fields named in kwargs (with `defaults_only`, only those still None); returns the kwargs that
        are no field, as transformers does."""
        used = []
        for key, value in kwargs.items():
            if allow_custom_entries and not hasattr(self, key):
                setattr(self, key, value)
                used.append(key)
            elif hasattr(self, key) and not key.startswith("__") and not callable(getattr(type(self), key, None)):
                if not defaults_only or getattr(self, key) is None:
                    setattr(self, key, value)
                    used.append(key)
        self.validate(user_set=set(used))
        return {k: v for k, v in kwargs.items() if k not in used}

    def fill_unset(self, values: dict[str, Any]) -> None:
        """Set every entry of `values` that is None or missing here, without validating (`generate` merges a
        model's config and the global defaults this way, then validates once)."""
        own = self.__dict__
        for key, value in values.items():
            if own.get(key) is None and key != "_original_hash":
                own[key] = list(value) if isinstance(value, list) else value

    def copy(self) -> GenerationConfig:
        """A copy whose lists and dicts are its own."""
        clone = object.__new__(type(self))
        clone.__dict__ = {k: copy.copy(v) if isinstance(v, (list, dict)) else v for k, v in self.__dict__.items()}
        return clone

    # ---- files ----------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name: str | os.PathLike, config_file_name: str | None = None,
                        cache_dir: str | os.PathLike | None = None, revision: str | None = None,
                        **kwargs: Any) -> GenerationConfig | tuple:
        """generation_config.json (or `config_file_name`) of a folder, cached snapshot or hub id; `kwargs`
        override its entries. `_from_model_config=True` reads the file as a config.json."""
        from ..io import hub
        from ..io.files import read_json

        for key in ("force_download", "local_files_only", "token", "proxies", "subfolder"):
            kwargs.pop(key, None)
        folder = hub.resolve(pretrained_model_name, revision=revision, cache_dir=cache_dir)
        name = config_file_name or GENERATION_CONFIG_NAME
        data = read_json(folder / name, name)
        if kwargs.pop("_from_model_config", False):
            return cls.from_model_config(data)
        result = cls.from_dict(data, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        config._original_hash = hash(config)
        return result

    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str | None = None) -> None:
        """Write generation_config.json (only the fields that are set) into `save_directory`. A config changed
        since it was loaded must pass the strict validation transformers applies before saving."""
        self.validate(strict=self.was_modified())
        folder = Path(save_directory)
        if folder.is_file():
            raise InputError(f"GenerationConfig.save_pretrained: {folder} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        self.to_json_file(folder / (config_file_name or GENERATION_CONFIG_NAME))

    def was_modified(self) -> bool:
        return self._original_hash != hash(self)

    # ---- comparison -----------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GenerationConfig):
            return False
        return (self.to_json_string(use_diff=False, ignore_metadata=True)
                == other.to_json_string(use_diff=False, ignore_metadata=True))

    def __hash__(self) -> int:
        return hash(self.to_json_string(ignore_metadata=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(ignore_metadata=True)}"

    def custom_entries(self) -> dict[str, Any]:
        """Entries that are no transformers field (kept from a file or a constructor keyword)."""
        known = set(FIELDS) | set(METADATA) | {"_original_hash"}
        return {k: v for k, v in self.__dict__.items() if k not in known}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_ready(value: Any) -> Any:
    """Keys as strings (sequence_bias maps tuples), objects with `to_dict()` as their dict."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _json_ready(value.to_dict())
    return value
