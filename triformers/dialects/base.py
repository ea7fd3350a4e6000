"""What a checkpoint dialect is: a config translation, one weight-name table, and a pre-training recipe.

A `Rule` maps one of our parameters to one or more checkpoint tensors, with a `load` transform
(theirs -> ours) and its inverse `save` (ours -> theirs); loading and saving are both derived from
the same table, so they cannot drift apart. `{}` in a name is the layer index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..config import ModelConfig
from ..errors import ConfigError

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Rule:
    ours: str  # our parameter name, e.g. "encoder.layers.{}.attn.qkv.weight"
    theirs: tuple[str, ...]  # checkpoint names; "a|b" = alternatives, the first is written on save
    layers: str | None = None  # "encoder" or "decoder": which layer count expands "{}"
    load: Callable[[Tensors, ModelConfig], torch.Tensor] | None = None  # default: the one tensor as is
    save: Callable[[torch.Tensor, ModelConfig], Tensors] | None = None  # default: the one tensor as is
    head: str | None = None  # None: body (must be in the checkpoint); else the task head it belongs to

    def expand(self, config: ModelConfig) -> Iterator[tuple[str, tuple[str, ...]]]:
        if self.layers is None:
            yield self.ours, self.theirs
            return
        count = config.num_layers if self.layers == "encoder" else config.decoder_layers
        for i in range(count):
            yield self.ours.format(i), tuple(t.format(i) for t in self.theirs)


def fused(parts: int, dim: int = 0) -> dict[str, Callable]:
    """Rule transforms for `parts` checkpoint tensors concatenated along `dim` into one of ours."""
    return {
        "load": lambda tensors, config: torch.cat(tensors, dim=dim),
        "save": lambda tensor, config: tuple(tensor.chunk(parts, dim=dim)),
    }


def transposed() -> dict[str, Callable]:
    """GPT-2's Conv1D stores weights as (in, out); ours are nn.Linear's (out, in). Loading keeps the transposed
    view of the checkpoint tensor (no copy); `Linear` writes it out row-major the first time that layout
    pays off: a matmul of a few rows (decoding), training, packing (`layers.linear.row_major`)."""
    return {
        "load": lambda tensors, config: tensors[0].t(),
        "save": lambda tensor, config: (tensor.t(),),
    }


OBJECTIVES = ("mlm", "clm", "span_corruption", "text_infilling")
TOKENIZER_KINDS = ("wordpiece", "bpe", "roberta", "unigram")


@dataclass(frozen=True)
class Recipe:
    """How `triformers pretrain --dialect X` pre-trains a model of this dialect from scratch.

    objective: mlm (BERT's 80/10/10) | clm (packed next-token) | span_corruption (T5) | text_infilling (BART).
    tokenizer: the kind trained from the corpus: wordpiece (BERT) | bpe (byte-level, GPT-2's single
    `<|endoftext|>`) | roberta (byte-level BPE with `<s> <pad> </s> <unk> <mask>`) | unigram (T5, sentinels).
    special_ids: config fields set from the trained tokenizer beyond pad / bos / eos (which always are),
    e.g. T5 starts decoding from the pad token: {"decoder_start_token_id": "pad_token_id"}.
    config: ModelConfig fields a from-scratch model of this dialect takes (beyond the sizes).
    size: the default sizes of a from-scratch model of this dialect, for a dialect that needs its own
    (`triformers.pretraining.ModelSize` fields, e.g. (("heads", 8),)); what the user sets wins.
    """

    objective: str
    tokenizer: str
    special_ids: tuple[tuple[str, str], ...] = ()
    config: tuple[tuple[str, Any], ...] = ()
    size: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"Recipe: objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(f"Recipe: tokenizer must be one of {TOKENIZER_KINDS}, got {self.tokenizer!r}")


class Dialect:
    """One checkpoint dialect: subclasses set the names and implement the two translations."""

    model_type: str  # config.json's model_type
    family: str  # encoder | decoder | encoder-decoder
    recipe: Recipe | None = None  # how `triformers pretrain` trains it from scratch (None: it cannot)
    base_prefix: str = ""  # how head classes nest the body in checkpoint names ("bert.", "transformer.")
    architectures: dict[str | None, str] = {}  # our head -> transformers class name written to config.json
    ignore: tuple[str, ...] = ()  # regexes of checkpoint keys dropped silently (buffers, tied copies)

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        raise NotImplementedError

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        raise NotImplementedError

    def rules(self, config: ModelConfig) -> list[Rule]:
        raise NotImplementedError

    def config_for_weights(self, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> ModelConfig:
        """Settings only the weights reveal (T5: an untied lm_head under `tie_word_embeddings: true`)."""
        return config

    def is_ignored(self, key: str) -> bool:
        return any(re.search(pattern, key) for pattern in self.ignore)


_MISSING = object()


def read(hf: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """hf[key] checked against a type, with an error that names the key and the file."""
    if key not in hf or hf[key] is None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing required key {key!r}")
        return default
    value = hf[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def common_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys every family shares: special token ids and classification labels."""
    id2label = read(hf, "id2label", dict, where, {})
    try:
        id2label = {int(k): str(v) for k, v in id2label.items()}
    except ValueError:
        raise ConfigError(f"{where}: id2label keys must be integers, got {list(id2label)[:5]}") from None
    num_labels = read(hf, "num_labels", int, where, len(id2label) or 2)
    token = (int, list)
    return dict(
        pad_token_id=read(hf, "pad_token_id", int, where, None),
        bos_token_id=read(hf, "bos_token_id", int, where, None),
        eos_token_id=read(hf, "eos_token_id", token, where, None),
        decoder_start_token_id=read(hf, "decoder_start_token_id", int, where, None),
        forced_bos_token_id=read(hf, "forced_bos_token_id", int, where, None),
        forced_eos_token_id=read(hf, "forced_eos_token_id", int, where, None),
        num_labels=num_labels,
        id2label=id2label,
        problem_type=read(hf, "problem_type", str, where, None),
    )


def common_to_hf(config: ModelConfig) -> dict[str, Any]:
    labels = config.labels()
    out = dict(
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        id2label={str(i): label for i, label in labels.items()},
        label2id={label: i for i, label in labels.items()},
    )
    for key in ("decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id", "problem_type"):
        if getattr(config, key) is not None:
            out[key] = getattr(config, key)
    return out
