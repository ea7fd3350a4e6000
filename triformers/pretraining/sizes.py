"""ModelSize: the sizes of a model pre-trained from scratch.

A field left None takes the dialect recipe's value (`Recipe.size`, for a dialect that needs its own), else
the generic one in `GENERIC_SIZE`; `resolve_size` fills them in. `intermediate_size` and `dropout` may
stay None: 4 x hidden size, and the dialect config's own dropout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError
from ..training.fields import check_fields, option

GENERIC_SIZE = {"hidden_size": 256, "layers": 4, "heads": 4, "seq_len": 128}
_RECIPE = "None: the dialect recipe's, else"


@dataclass
class ModelSize:
    """Sizes of a model pre-trained from scratch (None: the dialect recipe's, else the generic size)."""

    hidden_size: int | None = option(None, f"hidden size ({_RECIPE} {GENERIC_SIZE['hidden_size']})")
    layers: int | None = option(None, "encoder layers, and the decoder layers of an encoder-decoder "
                                f"({_RECIPE} {GENERIC_SIZE['layers']})")
    heads: int | None = option(None, f"attention heads ({_RECIPE} {GENERIC_SIZE['heads']})")
    intermediate_size: int | None = option(None, f"MLP width ({_RECIPE} 4 x hidden size)")
    seq_len: int | None = option(None, "tokens per example; the encoder inputs of an encoder-decoder "
                                 f"({_RECIPE} {GENERIC_SIZE['seq_len']})", flags=("--max-length",))
    dropout: float | None = option(None, f"dropout probability ({_RECIPE} the dialect config's)")

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("hidden_size", "layers", "heads", "intermediate_size", "seq_len"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"ModelSize: {name}={getattr(self, name)} must be at least 1")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"ModelSize: dropout={self.dropout} must be in [0, 1)")


def resolve_size(size: ModelSize, recipe_size: Mapping[str, Any] = (), where: str = "recipe") -> ModelSize:
    """`size` with its None fields taken from `recipe_size` (a dialect's `Recipe.size`), then GENERIC_SIZE."""
    recipe_size = dict(recipe_size)
    names = {f.name for f in dataclasses.fields(ModelSize)}
    if unknown := sorted(set(recipe_size) - names):
        raise ConfigError(f"{where}: Recipe.size names {unknown}, which are not ModelSize fields {sorted(names)}")
    filled = {name: value for name, value in {**GENERIC_SIZE, **recipe_size}.items()
              if getattr(size, name) is None}
    return dataclasses.replace(size, **filled)
