"""Config keys the Llama-shaped dialects share: sizes, grouped-query heads, rotary positions, layer types.

Rotary settings come in two layouts, and both read the same (transformers 5.24 `modeling_rope_utils`,
`RotaryEmbeddingConfigMixin.convert_rope_params_to_dict` / `standardize_rope_params`):
- v4 files: `rope_theta` (GPT-NeoX: `rotary_emb_base`) and `rope_scaling` ({"type" | "rope_type": ..., params})
  at the top level, a partial rotary share as `partial_rotary_factor` (NeoX: `rotary_pct`);
- v5 files: `rope_parameters` {"rope_theta", "rope_type", params, maybe "partial_rotary_factor"}, nested per
  layer type for Gemma 3 ({"sliding_attention": {...}, "full_attention": {...}}, see `nested_rope_keys`).
As in transformers, a `rope_scaling` wins over `rope_parameters`, a theta inside the parameters over the
top-level one, and llama3 / yarn / longrope default `original_max_position_embeddings` to
`max_position_embeddings`. An unknown rope_type is refused. Writing keeps the layout the file had (the key
table's spelling rule); a config built from scratch is written as transformers 5.24 writes it
(`rope_parameters`).

`layer_types` lists "full_attention" / "sliding_attention" per layer; each dialect has its default pattern
(Qwen2: layers from `max_window_layers` on; Gemma 2: every other; Gemma 3: all but every sixth).
"""

from __future__ import annotations

from typing import Any, Callable

from ..config import ROPE_PARAMETERS, ModelConfig
from .base import NULL, Key
from .keys import activation

LAYER_TYPES = ("full_attention", "sliding_attention")
NEEDS_ORIGINAL = ("llama3", "yarn", "longrope")  # rope types that scale from the pre-training length


def size_keys(*, vocab: int, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int | None,
              head_dim: int | None, act_key: str, act: str, max_positions: int, eps: float,
              gemma: bool = False, head_dim_field: bool = True) -> tuple[Key, ...]:
    """The size keys of a Llama-shaped config class (its defaults given); `num_key_value_heads` equal to the
    heads and `head_dim` equal to hidden / heads read as None (the same model, and resizing keeps them so).
    gemma: embeddings scaled by sqrt(hidden_size), and a plain "gelu" read as the tanh approximation
    (`GemmaConfig.__post_init__`: the official releases meant it). head_dim_field: the config class has a
    `head_dim` field, always written (else only where a file has one or it differs from hidden / heads)."""
    hidden_key = Key("hidden_size", "hidden_size", int, hidden)
    if gemma:
        hidden_key = Key("hidden_size", ("hidden_size", "embedding_scale"), int, hidden,
                         load=lambda value, read: (value, value ** 0.5), save=lambda c: c.hidden_size)
    act_transforms = _tanh_gelu_activation()
    if gemma:
        act_transforms["load"] = lambda value, read: ("gelu_tanh" if value == "gelu"
                                                      else activation()["load"](value, read))
    return (
        Key("vocab_size", "vocab_size", int, vocab),
        hidden_key,
        Key("intermediate_size", "intermediate_size", int, intermediate),
        Key("num_hidden_layers", "num_layers", int, layers),
        Key("num_attention_heads", "num_heads", int, heads),
        Key("num_key_value_heads", "num_kv_heads", (int, NULL), kv_heads,
            load=lambda value, read: None if value is None or value == read["num_attention_heads"] else value,
            save=lambda c: c.key_value_heads),
        Key("head_dim", "head_dim", (int, NULL), head_dim,
            load=lambda value, read: None if value is None or value * read["num_attention_heads"]
            == read["hidden_size"] else value, save=lambda c: c.attention_head_dim, optional=not head_dim_field),
        Key(act_key, "activation", str, act, **act_transforms),
        Key("max_position_embeddings", "max_positions", int, max_positions),
        Key("initializer_range", "initializer_range", float, 0.02),
        Key("rms_norm_eps", "norm_eps", float, eps),
    )


def _tanh_gelu_activation() -> dict[str, Callable]:
    """activation() but writing transformers' `gelu_pytorch_tanh` for ours (the same function as F.gelu's tanh
    approximation, which `gelu_new` computes in other float operations)."""
    base = activation()
    return {"load": base["load"],
            "save": lambda c: "gelu_pytorch_tanh" if c.activation == "gelu_tanh" else base["save"](c)}


def rope_keys(*, theta_key: str = "rope_theta", theta: float = 10000.0, fraction_key: str | None = None,
              fraction: float = 1.0, fraction_in_parameters: bool = False, renamed: dict[str, str] | None = None,
              original_key: str | None = None, original: int = 4096) -> tuple[Key, ...]:
    """The rotary keys in both layouts. fraction_key: the v4 key of the rotated share (None: the dialect rotates
    whole heads); fraction_in_parameters: transformers writes the share into rope_parameters; renamed: old rope
    type names (Phi-3's "su"); original_key: a top-level `original_max_position_embeddings` that wins (Phi-3,
    default `original`)."""

    def load(value: Any, read: dict[str, Any]) -> tuple[float, dict | None, float]:
        params = dict(read["rope_scaling"] or value or {})
        theta_value = params.pop("rope_theta", None)
        share = params.pop("partial_rotary_factor", None)
        if share is None:
            share = read[fraction_key] if fraction_key else 1.0
        elif fraction_key is None and share != 1.0:
            raise ValueError(f"partial_rotary_factor {share} is not supported: transformers' default rope for this "
                             "model type rotates whole heads")
        scaling = _scaling(params, read, renamed or {}, original_key)
        return read[theta_key] if theta_value is None else float(theta_value), scaling, float(share)

    def parameters(c: ModelConfig) -> dict[str, Any]:
        out = {"rope_theta": c.rope_theta, **(c.rope_scaling or {"rope_type": "default"})}
        if fraction_in_parameters:
            out["partial_rotary_factor"] = c.rotary_fraction
        return out

    keys = [Key(theta_key, None, float, theta, optional=True, save=lambda c: c.rope_theta)]
    if fraction_key:
        keys.append(Key(fraction_key, None, float, fraction, optional=True, save=lambda c: c.rotary_fraction))
    if original_key:
        keys.append(Key(original_key, None, int, original,
                        save=lambda c: (c.rope_scaling or {}).get("original_max_position_embeddings", original)))
    keys += [Key("rope_scaling", None, (dict, NULL), None, optional=True, save=lambda c: None),
             Key("rope_parameters", ("rope_theta", "rope_scaling", "rotary_fraction"), (dict, NULL), None,
                 optional=True, load=load, save=parameters)]
    return tuple(keys)


def _scaling(params: dict[str, Any], read: dict[str, Any], renamed: dict[str, str],
             original_key: str | None) -> dict[str, Any] | None:
    """A rope parameters dict (theta and share taken out) -> our rope_scaling: {"rope_type": ..., params},
    or None for the default rope."""
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    kind = renamed.get(kind, kind)
    if kind not in ROPE_PARAMETERS:
        raise ValueError(f"rope_type {kind!r} is not one triformers implements (transformers 5.24's: "
                         f"{', '.join(sorted(ROPE_PARAMETERS))})")
    if kind in NEEDS_ORIGINAL:
        if original_key:  # Phi-3 keeps the pre-training length at the top level, and it wins there
            params["original_max_position_embeddings"] = read[original_key]
        params.setdefault("original_max_position_embeddings", read["max_position_embeddings"])
    if kind == "default" and not params:
        return None
    return {"rope_type": kind, **params}


def nested_rope_keys(*, theta: float, local_theta: float) -> tuple[Key, ...]:
    """Gemma 3's rotary keys: full-attention layers take `rope_theta` and any `rope_scaling`, sliding ones
    `rope_local_base_freq`, unscaled (v4); or `rope_parameters` nested by layer type (v5)."""

    def load(value: Any, read: dict[str, Any]) -> tuple[float, dict | None, float]:
        if value is not None and not set(value) <= set(LAYER_TYPES):
            raise ValueError(f"must be nested by layer type ({', '.join(LAYER_TYPES)}), got keys {sorted(value)}")
        value = value or {}
        full = dict(value.get("full_attention") or {})
        full.update(read["rope_scaling"] or {})
        sliding = dict(value.get("sliding_attention") or {})
        full_theta, local = full.pop("rope_theta", read["rope_theta"]), sliding.pop("rope_theta",
                                                                                    read["rope_local_base_freq"])
        if _scaling(sliding, read, {}, None) is not None:
            raise ValueError("with a scaled rope for sliding_attention layers is not supported (only "
                             "full_attention layers may scale)")
        return float(full_theta), _scaling(full, read, {}, None), float(local)

    def parameters(c: ModelConfig) -> dict[str, Any]:
        return {"full_attention": {"rope_theta": c.rope_theta, **(c.rope_scaling or {"rope_type": "default"})},
                "sliding_attention": {"rope_theta": c.local_rope_theta, "rope_type": "default"}}

    return (Key("rope_theta", None, float, theta, optional=True, save=lambda c: c.rope_theta),
            Key("rope_local_base_freq", None, float, local_theta, optional=True, save=lambda c: c.local_rope_theta),
            Key("rope_scaling", None, (dict, NULL), None, optional=True, save=lambda c: None),
            Key("rope_parameters", ("rope_theta", "rope_scaling", "local_rope_theta"), (dict, NULL), None,
                optional=True, load=load, save=parameters))


def layer_types_key(default: Callable[[dict[str, Any]], list[str]], active: Callable[[dict[str, Any]], bool]) -> Key:
    """`layer_types` -> sliding_window_layers (None: every layer slides, or none has a window); `default(read)`
    is the dialect's pattern when the file has none; `active(read)`: whether the window is in force."""

    def load(value: Any, read: dict[str, Any]) -> tuple[int, ...] | None:
        if not active(read):
            return None
        types = value if value is not None else default(read)
        layers = read["num_hidden_layers"]
        if len(types) != layers or any(t not in LAYER_TYPES for t in types):
            raise ValueError(f"must list {layers} of {', '.join(LAYER_TYPES)}, got {types!r}")
        sliding = tuple(i for i, kind in enumerate(types) if kind == "sliding_attention")
        return None if len(sliding) == layers else sliding

    def save(c: ModelConfig) -> list[str]:
        return [LAYER_TYPES[c.sliding_layer(i)] for i in range(c.num_layers)]

    return Key("layer_types", "sliding_window_layers", (list, NULL), None, load=load, save=save)


def every(period: int) -> Callable[[dict[str, Any]], list[str]]:
    """Gemma's default pattern: every `period`-th layer full, the others sliding."""
    return lambda read: [LAYER_TYPES[bool((i + 1) % period)] for i in range(read["num_hidden_layers"])]
