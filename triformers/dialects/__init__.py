"""Checkpoint dialects, keyed by config.json's `model_type`; `register` adds a user's own."""

from __future__ import annotations

from ..errors import ConfigError
from .bart import BartDialect
from .base import NULL, Dialect, Key, Recipe, Rule, fused, interleaved_heads, read, split, transposed
from .bert import BertDialect, RobertaDialect
from .bloom import BloomDialect
from .gemma import GemmaDialect
from .gemma2 import Gemma2Dialect
from .gemma3_text import Gemma3TextDialect
from .gpt2 import GPT2Dialect
from .gpt_neox import GPTNeoXDialect
from .llama import LlamaDialect
from .mistral import MistralDialect
from .opt import OPTDialect
from .phi3 import Phi3Dialect
from .qwen2 import Qwen2Dialect
from .qwen3 import Qwen3Dialect
from .t5 import T5Dialect

DIALECTS: dict[str, Dialect] = {}


def register(dialect: Dialect) -> Dialect:
    """Make a dialect loadable by its model_type through every Auto class."""
    if not getattr(dialect, "model_type", None) or getattr(dialect, "family", None) not in (
            "encoder", "decoder", "encoder-decoder"):
        raise ConfigError(f"{dialect!r}: a dialect needs a model_type and a family (encoder, decoder, encoder-decoder)")
    DIALECTS[dialect.model_type] = dialect
    return dialect


def get_dialect(model_type: str, where: str = "config") -> Dialect:
    if model_type not in DIALECTS:
        raise ConfigError(f"{where}: unknown model_type {model_type!r}; supported: {', '.join(sorted(DIALECTS))}")
    return DIALECTS[model_type]


def checkpoint_attribute(config, name: str):
    """`config.<name>` for a name that is not a ModelConfig field (see `Dialect.attribute`)."""
    if config.model_type not in DIALECTS:
        raise AttributeError(f"ModelConfig has no field {name!r} (and model_type {config.model_type!r} no dialect)")
    return DIALECTS[config.model_type].attribute(config, name)


def setting_error(config, name: str) -> str:
    """Why `config.<name> = value` is refused (see `Dialect.setting_error`)."""
    if config.model_type not in DIALECTS:
        return f"ModelConfig has no field {name!r}; a config.json key of your own goes in config.extra[{name!r}]"
    return DIALECTS[config.model_type].setting_error(config, name)


for _dialect in (BertDialect(), RobertaDialect(), GPT2Dialect(), BloomDialect(), T5Dialect(), BartDialect(),
                LlamaDialect(), MistralDialect(), Qwen2Dialect(), Qwen3Dialect(), GemmaDialect(), Gemma2Dialect(),
                Gemma3TextDialect(), Phi3Dialect(), GPTNeoXDialect(), OPTDialect()):
    register(_dialect)

__all__ = ["Dialect", "Key", "NULL", "Recipe", "Rule", "fused", "split", "interleaved_heads", "transposed", "read",
           "register", "get_dialect",
           "DIALECTS", "checkpoint_attribute", "setting_error"]
