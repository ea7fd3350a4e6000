"""The Auto API: a checkpoint's `model_type` picks the dialect, the dialect's family picks the model.

Each `AutoModelFor...` is a thin pointer: (the families it accepts, the head it attaches).
`register(dialect)` (from triformers.dialects) makes a user's own dialect loadable by all of them.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .config import ModelConfig
from .dialects import get_dialect
from .errors import ConfigError
from .io.options import HubOptions, split
from .io.pretrained import Checkpoint, load_model, locate
from .models import FAMILIES, TransformerModel
from .tokenization import AutoTokenizer  # noqa: F401  (re-exported)


class AutoConfig:
    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike | Checkpoint, revision: str | None = None,
                        gguf_file: str | os.PathLike | None = None, **overrides: Any) -> ModelConfig:
        """Read config.json (or a GGUF file's metadata) through its dialect; overrides use the checkpoint's own
        key names. transformers' hub keywords (`cache_dir`, `subfolder`, `local_files_only`, `token`,
        `force_download`) say where from; `trust_remote_code=True` is refused."""
        hub = HubOptions(revision=revision, **{name: overrides.pop(name) for name in list(overrides)
                                               if name in HubOptions.__dataclass_fields__})
        return locate(name_or_path, revision, overrides, gguf_file, hub_options=hub).config

    @staticmethod
    def for_model(model_type: str, **hf_keys: Any) -> ModelConfig:
        """A config from scratch, e.g. AutoConfig.for_model("bert", hidden_size=256, num_hidden_layers=4)."""
        return get_dialect(model_type).config_from_hf(hf_keys, f"AutoConfig.for_model({model_type!r})")


class _AutoModel:
    families: tuple[str, ...] = ("encoder", "decoder", "encoder-decoder")
    head: dict[str, str | None] = {}  # family -> head

    @classmethod
    def _family(cls, config: ModelConfig, where: str) -> type[TransformerModel]:
        family = get_dialect(config.model_type).family
        if family not in cls.families:
            article = "an" if family[0] in "aeiou" else "a"
            raise ConfigError(f"{where}: {cls.__name__} takes {' or '.join(cls.families)} models; "
                              f"model_type {config.model_type!r} is {article} {family} model")
        return FAMILIES[family]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | Checkpoint, *, ignore_mismatched_sizes: bool = False,
                        quantize: str | None = None, gguf_file: str | os.PathLike | None = None,
                        **kwargs: Any) -> TransformerModel:
        """Load weights and config (resolved and read once); the model comes back in eval mode. `gguf_file`: a GGUF
        file of the folder or repository (a path to a `.gguf` file works as `name_or_path` too), dequantized.
        transformers' loading keywords work as there (`dtype` / `torch_dtype`, `device_map`, `attn_implementation`,
        `revision`, `cache_dir`, `subfolder`, `local_files_only`, `token`, `force_download`, `use_safetensors`,
        `low_cpu_mem_usage`; see io/options.py); `generation_config=` replaces the checkpoint's generation settings;
        any other keyword must be a config key of the checkpoint (an override), else it is an InputError."""
        generation_config = kwargs.pop("generation_config", None)
        hub, options, config_overrides = split(kwargs)
        checkpoint = locate(name_or_path, None, config_overrides, gguf_file, hub_options=hub, strict=True)
        model_cls = cls._family(checkpoint.config, str(checkpoint.config_file))
        return load_model(model_cls, checkpoint, head=cls.head.get(model_cls.family),
                          ignore_mismatched_sizes=ignore_mismatched_sizes, quantize=quantize,
                          generation_config=generation_config, options=options)

    @classmethod
    def from_config(cls, config: ModelConfig, dtype: torch.dtype | None = None) -> TransformerModel:
        """A randomly initialised model of this kind."""
        model_cls = cls._family(config, "from_config")
        return model_cls.from_config(config, head=cls.head.get(model_cls.family), dtype=dtype)


class AutoModel(_AutoModel):
    """The body alone: hidden states (and the pooler output where the dialect has one)."""


class AutoModelForMaskedLM(_AutoModel):
    families = ("encoder",)
    head = {"encoder": "mlm"}


class AutoModelForCausalLM(_AutoModel):
    families = ("decoder",)
    head = {"decoder": "lm"}


class AutoModelForSeq2SeqLM(_AutoModel):
    families = ("encoder-decoder",)
    head = {"encoder-decoder": "lm"}


class AutoModelForSequenceClassification(_AutoModel):
    head = {family: "sequence_classification" for family in _AutoModel.families}


class AutoModelForTokenClassification(_AutoModel):
    families = ("encoder", "decoder")
    head = {"encoder": "token_classification", "decoder": "token_classification"}


class AutoModelForQuestionAnswering(_AutoModel):
    families = ("encoder", "decoder")
    head = {"encoder": "question_answering", "decoder": "question_answering"}
