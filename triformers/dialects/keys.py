"""Config keys more than one dialect reads: the shared table of special ids and labels, and activation names.

`common_keys` is the one table of the keys every transformers config carries (pad / bos / eos ids,
decoder start and forced ids, id2label / num_labels, problem_type), with each dialect's own defaults and
the names that are fields of its transformers config class (always written; the others only when set,
as transformers writes them). `activation` is the named transform between transformers' `ACT2FN` names
(`transformers/activations.py`) and ours.
"""

from __future__ import annotations

from typing import Any, Callable

from .base import NULL, Key

# transformers' name -> ours; the first name of each of ours is the one written for a config built from scratch
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                    "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATION_BACK = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def activation_name(name: str) -> str:
    if name not in ACTIVATION_NAMES:
        raise ValueError(f"{name!r} is not supported; use one of {sorted(ACTIVATION_NAMES)}")
    return ACTIVATION_NAMES[name]


def activation(field: str = "activation") -> dict[str, Callable]:
    """Key transforms: transformers' activation name <-> ours in `field`."""
    return {"load": lambda value, read: activation_name(value),
            "save": lambda config: ACTIVATION_BACK[getattr(config, field)]}


def _id2label(value: dict[str, Any], read: dict[str, Any]) -> dict[int, str]:
    try:
        return {int(k): str(v) for k, v in value.items()}
    except ValueError:
        raise ValueError(f"keys must be integers, got {list(value)[:5]}") from None


def common_keys(pad: Any = None, bos: Any = None, eos: Any = None, decoder_start: Any = None, forced_eos: Any = None,
                num_labels: int = 2, fields: tuple[str, ...] = ("pad_token_id", "bos_token_id", "eos_token_id"),
                ) -> tuple[Key, ...]:
    """The shared keys with one dialect's defaults (transformers' class defaults; a callable default gets the
    keys read before it); `fields` names the ones its transformers config class always writes."""
    ids = {"pad_token_id": ((int, NULL), pad), "bos_token_id": ((int, NULL), bos),
           "eos_token_id": ((int, list, NULL), eos), "decoder_start_token_id": ((int, NULL), decoder_start),
           "forced_bos_token_id": ((int, NULL), None), "forced_eos_token_id": ((int, NULL), forced_eos)}
    keys = [Key(name, name, kind, default, optional=name not in fields) for name, (kind, default) in ids.items()]
    return (*keys,
            Key("id2label", "id2label", dict, {}, load=_id2label, optional=True,
                save=lambda config: {str(i): label for i, label in config.id2label.items()}),
            # transformers writes no num_labels (id2label carries it) but honours one it reads
            Key("num_labels", "num_labels", int, lambda read: len(read["id2label"]) or num_labels, optional=True),
            Key("problem_type", "problem_type", (str, NULL), None, only=(None, *PROBLEM_TYPES), optional=True))
