"""What a checkpoint dialect is: one config-key table, one weight-name table, and a pre-training recipe.

A `Rule` maps one of our parameters to one or more checkpoint tensors, with a `load` transform
(theirs -> ours) and its inverse `save` (ours -> theirs); loading and saving are both derived from
the same table, so they cannot drift apart. `{}` in a name is the layer index.

A `Key` does the same for one config.json key: the ModelConfig field(s) it sets, `load` and its inverse
`save`, the JSON kind checked, the values triformers can honour, and the value transformers 5.24 assumes
when the key is absent. `Dialect.config_from_hf` and `config_to_hf` are both derived from the dialect's
`keys` (plus the flags it `fixed`); writing re-reads what it wrote, so a config that its keys cannot say
(a flag the dialect fixes, an unwritable combination) is refused instead of saved wrong.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..config import ModelConfig
from ..errors import ConfigError

Tensors = tuple[torch.Tensor, ...]
NULL = type(None)  # in a Key's kind: an explicit null is a value (None), not "absent"
# Keys every config.json may carry that no dialect reads: written by whoever saved it, rewritten on save.
WRITTEN_BY_SAVER = ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype", "label2id")


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


def split(sizes: Callable[[ModelConfig], list[int]]) -> dict[str, Callable]:
    """Rule transforms for checkpoint tensors of different sizes (`sizes(config)` rows each) concatenated
    along dim 0 into one of ours: grouped-query q | k | v, whose k and v have fewer heads than q."""
    return {
        "load": lambda tensors, config: torch.cat(tensors, dim=0),
        "save": lambda tensor, config: tuple(tensor.split(sizes(config), dim=0)),
    }


def interleaved_heads() -> dict[str, Callable]:
    """Rule transforms for a q|k|v fused per head (BLOOM's and GPT-NeoX's `query_key_value`: rows ordered
    (heads, 3, head_dim)) <-> ours (3, heads, head_dim): all q rows, then all k, then all v (weight or bias)."""
    def load(tensors: Tensors, config: ModelConfig) -> torch.Tensor:
        fused_rows, rest = tensors[0], tensors[0].shape[1:]  # rest: (H,) for the weight, () for the bias
        heads, hd = config.num_heads, config.attention_head_dim
        if fused_rows.shape[0] != 3 * heads * hd:  # the loader's shape check then names the file
            return fused_rows
        return fused_rows.view(heads, 3, hd, *rest).transpose(0, 1).reshape(3 * heads * hd, *rest)

    def save(tensor: torch.Tensor, config: ModelConfig) -> Tensors:
        rest, heads, hd = tensor.shape[1:], config.num_heads, config.attention_head_dim
        return (tensor.view(3, heads, hd, *rest).transpose(0, 1).reshape(3 * heads * hd, *rest),)

    return {"load": load, "save": save}


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


@dataclass(frozen=True)
class Key:
    """One config.json key <-> the ModelConfig field(s) it sets.

    theirs: the key; "a|b" = names of one setting (an old name, transformers' `attribute_map` alias: read from any
        the file has, they must agree), the first written.
    ours: the field, a tuple of fields (then `load` returns a tuple), or None: a key that is only checked against
        `only` (a variant triformers does not implement) and written as the supported value (or the file's).
    kind: JSON types accepted (float accepts int; with NULL in it, an explicit null is None, else null = absent).
    default: what transformers 5.24 assumes when the key is absent; a callable gets the keys read before it.
    load: (value, read) -> field value(s), `read` = the keys read so far by first name; default: the value.
    save: config -> the value written; `load(save(config))` must give the config's fields back.
    only: the values triformers honours (empty: any), or a test (value, read) -> bool; another value is refused
        with a ConfigError naming the key and the file (`why` says why).
    optional: written only where it matters (not at its default) or where the file had it, as transformers
        writes keys that are not fields of its config class (forced ids, id2label); others are always written.
    """

    theirs: str
    ours: str | tuple[str, ...] | None
    kind: type | tuple[type, ...]
    default: Any = None
    load: Callable[[Any, dict[str, Any]], Any] | None = None
    save: Callable[[ModelConfig], Any] | None = None
    only: tuple[Any, ...] | Callable[[Any, dict[str, Any]], bool] = ()
    why: str = ""
    optional: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.theirs.split("|"))

    @property
    def name(self) -> str:
        return self.names[0]

    def value_in(self, hf: dict[str, Any], read: dict[str, Any], where: str) -> Any:
        """The key's value in `hf`, checked, or its default when absent; `read`: the keys read before it."""
        value = _MISSING
        for name in (n for n in self.names if n in hf):
            got = check(hf[name], name, self.kind, where)
            if value is not _MISSING and got != value:
                raise ConfigError(f"{where}: {self.theirs.replace('|', ' and ')} name one setting and disagree "
                                  f"({value!r} vs {got!r})")
            value = got
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if value is _MISSING or (value is None and NULL not in kinds):
            value = self.default(read) if callable(self.default) else self.default
        if callable(self.only) and not self.only(value, read):
            raise ConfigError(f"{where}: {self.name}={value!r} is not supported{self.why}")
        if isinstance(self.only, tuple) and self.only and value not in self.only:
            raise ConfigError(f"{where}: {self.name}={value!r} is not supported (triformers implements "
                              f"{' or '.join(map(repr, self.only))}){self.why}")
        return value

    def fields(self, value: Any, read: dict[str, Any], where: str) -> dict[str, Any]:
        """The ModelConfig fields this key sets from its value."""
        if self.ours is None:
            return {}
        try:
            result = self.load(value, read) if self.load is not None else value
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {self.name} {err}") from None
        return dict(zip(self.ours, result, strict=True)) if isinstance(self.ours, tuple) else {self.ours: result}

    def write(self, config: ModelConfig) -> Any:
        if self.save is not None:
            return self.save(config)
        if self.ours is None:
            return self.only[0] if isinstance(self.only, tuple) and self.only else self.default
        return getattr(config, self.ours)


class Dialect:
    """One checkpoint dialect: its config-key table and fixed flags, its weight table, and its names.

    A subclass lists its `keys` (the two translations derive from them); a dialect written before the table
    may instead override `config_from_hf` and `config_to_hf` itself.
    """

    model_type: str  # config.json's model_type
    family: str  # encoder | decoder | encoder-decoder
    recipe: Recipe | None = None  # how `triformers pretrain` trains it from scratch (None: it cannot)
    base_prefix: str = ""  # how head classes nest the body in checkpoint names ("bert.", "transformer.")
    # a head class that nests it otherwise (LlamaForQuestionAnswering: "transformer.")
    head_prefixes: dict[str, str] = {}
    architectures: dict[str | None, str] = {}  # our head -> transformers class name written to config.json
    ignore: tuple[str, ...] = ()  # regexes of checkpoint keys dropped silently (buffers, tied copies)
    keys: tuple[Key, ...] = ()  # config.json keys <-> ModelConfig fields, in reading order
    fixed: dict[str, Any] = {}  # ModelConfig flags every checkpoint of the dialect has (norm placement, ...)
    lora_targets: tuple[str, ...] = ()  # peft's default LoRA target_modules for this model_type (transformers' names)

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        """config.json keys -> ModelConfig; keys the table does not read are kept in `extra`."""
        read: dict[str, Any] = {}
        fields = dict(self.fixed)
        for key in self.keys:
            read[key.name] = key.value_in(hf, read, where)
            fields.update(key.fields(read[key.name], read, where))
        try:
            config = ModelConfig(model_type=self.model_type, **fields)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        names = self.key_names()
        config.extra = {k: v for k, v in hf.items() if k not in names and k not in WRITTEN_BY_SAVER}
        config.source = {k: v for k, v in hf.items() if k in names}
        return config

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        """ModelConfig -> config.json keys (without `extra`): every key of the table (an optional one only where
        it matters), spelled as the file it came from spelled it wherever that still reads back the same."""
        where = f"config ({config.model_type})"
        out = {key.name: key.write(config) for key in self.keys}
        reference = self.config_from_hf(out, where)
        changed = differences(config, reference)
        if changed:
            raise ConfigError(f"{where}: {', '.join(f'{n}={getattr(config, n)!r}' for n in changed)} cannot be "
                              f"written as {self.model_type} config.json keys (they would read back as "
                              f"{', '.join(f'{n}={getattr(reference, n)!r}' for n in changed)})")
        for key in self.keys:
            names = [n for n in key.names if n in config.source]
            # the file's value under its name; else our value under the file's name; an optional key: left out
            candidates = [{n: config.source[n] for n in names}, {n: out[key.name] for n in names}] if names else \
                [{}] if key.optional else []
            for spelled in candidates:
                trial = {**{k: v for k, v in out.items() if k != key.name}, **spelled}
                if self._reads_as(trial, reference, where):
                    out = trial
                    break
        if out.get("id2label"):
            out["label2id"] = {label: int(i) for i, label in out["id2label"].items()}
        return out

    def _reads_as(self, hf: dict[str, Any], reference: ModelConfig, where: str) -> bool:
        try:
            return not differences(self.config_from_hf(hf, where), reference)
        except ConfigError:
            return False

    def key_names(self) -> set[str]:
        return {name for key in self.keys for name in key.names}

    def key_named(self, name: str) -> Key | None:
        """The table's key one of whose names is `name`."""
        return next((key for key in self.keys if name in key.names), None)

    def attribute(self, config: ModelConfig, name: str) -> Any:
        """`config.<name>` for a name that is not a field: a key of the table, as it would be written; a key kept
        in `extra`; `is_encoder_decoder`."""
        key = self.key_named(name)
        if key is not None:
            try:
                written = self.config_to_hf(config)
            except ConfigError:  # a config that cannot be saved still answers with the table's own value
                written = {}
            return next((written[n] for n in key.names if n in written), key.write(config))
        if name in config.extra:
            return config.extra[name]
        if name == "is_encoder_decoder":
            return self.family == "encoder-decoder"
        raise AttributeError(f"ModelConfig ({self.model_type}) has no field {name!r}, and {name!r} is neither a "
                             f"{self.model_type} config.json key nor one kept in config.extra")

    def setting_error(self, config: ModelConfig, name: str) -> str:
        """Why `config.<name> = ...` is refused, and what to set instead."""
        key = self.key_named(name)
        if key is not None and key.ours is not None:
            fields = key.ours if isinstance(key.ours, tuple) else (key.ours,)
            return (f"config.{name} is read-only: it is how {self.model_type} config.json names "
                    f"{' and '.join(fields)}; set {', '.join('config.' + f for f in fields)} (written back as "
                    f"{key.name!r})")
        if key is not None:
            return f"config.{name} is read-only: triformers implements only {name}={key.write(config)!r}"
        if name in config.extra:
            return (f"config.{name} is a config.json key triformers does not use; change config.extra[{name!r}] "
                    "to have another value written")
        return (f"ModelConfig has no field {name!r} and {self.model_type} config.json no such key; a key of your "
                f"own goes in config.extra[{name!r}]")

    def rules(self, config: ModelConfig) -> list[Rule]:
        raise NotImplementedError

    def prefix(self, head: str | None) -> str:
        """How the head class of `head` nests the body in checkpoint names (what saving writes)."""
        return self.head_prefixes.get(head, self.base_prefix)

    def prefixes(self, head: str | None) -> tuple[str, ...]:
        """The nestings loading accepts for `head`: its own, and the usual one (a body saved by another head)."""
        return tuple(dict.fromkeys(p for p in (self.prefix(head), self.base_prefix) if p))

    def config_for_weights(self, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> ModelConfig:
        """Settings only the weights reveal (T5: an untied lm_head under `tie_word_embeddings: true`)."""
        return config

    def is_ignored(self, key: str) -> bool:
        return any(re.search(pattern, key) for pattern in self.ignore)


_MISSING = object()


def differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """The ModelConfig fields (other than `extra` and `source`) in which two configs differ."""
    return [f.name for f in dataclasses.fields(a)
            if f.name not in ("extra", "source") and getattr(a, f.name) != getattr(b, f.name)]


def check(value: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`value` (of config.json's `key`) checked against a type, with an error that names the key and the file."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join("null" if k is NULL else k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def read(hf: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """hf[key] checked against a type (null or absent: `default`), with an error that names the key and the file."""
    if key not in hf or hf[key] is None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing required key {key!r}")
        return default
    return check(hf[key], key, kind, where)
