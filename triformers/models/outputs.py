"""Model outputs: one small dataclass with named fields (None where a model has no such output).

As transformers' `ModelOutput`, an output is also a sequence and a mapping of the fields that are set, in the
order of the transformers class the model's kind returns (`ORDERS`: `CausalLMOutputWithCrossAttentions`,
`Seq2SeqLMOutput`, ...): `out[0]`, `out[:2]`, `out.to_tuple()` (what `return_dict=False` returns), `keys()`,
`items()`. Fields transformers' class lacks (an LM's `last_hidden_state`) are attributes only. transformers 5.24
names the KV cache `cache` (`past_key_values` is its deprecated alias, kept here as a property).

A field may hold a `Deferred` computation, run on first access: a masked-LM training step computes its
loss from the ~15% of positions that carry a label and builds the full (B, T, V) logits only if the
caller reads them (a quarter of BERT pre-training's FLOPs otherwise spent on logits no one uses).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch


class Deferred:
    """A tensor computed when first read, under the grad and autocast modes of the forward that made it."""

    def __init__(self, compute: Callable[[], torch.Tensor], device_type: str):
        self.compute, self.device_type = compute, device_type
        self.grad = torch.is_grad_enabled()
        self.autocast = torch.is_autocast_enabled(device_type)
        self.autocast_dtype = torch.get_autocast_dtype(device_type) if self.autocast else None

    def __call__(self) -> torch.Tensor:
        with ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(self.grad))
            stack.enter_context(torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast))
            return self.compute()


# (family, head) -> transformers' output fields in its order
_DECODER_LM = ("loss", "logits", "cache", "hidden_states", "attentions", "cross_attentions")
_SEQ2SEQ = ("cache", "decoder_hidden_states", "decoder_attentions", "cross_attentions", "encoder_last_hidden_state",
            "encoder_hidden_states", "encoder_attentions")
_CLASSIFIER = ("loss", "logits", "hidden_states", "attentions")
ORDERS: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("decoder", None): ("last_hidden_state", "cache", "hidden_states", "attentions", "cross_attentions"),
    ("decoder", "lm"): _DECODER_LM,
    ("decoder", "sequence_classification"): ("loss", "logits", "cache", "hidden_states", "attentions"),
    ("decoder", "token_classification"): _CLASSIFIER,
    ("decoder", "question_answering"): ("loss", "start_logits", "end_logits", "hidden_states", "attentions"),
    ("encoder", None): ("last_hidden_state", "pooler_output", "hidden_states", "cache", "attentions",
                        "cross_attentions"),
    ("encoder", "mlm"): _CLASSIFIER,
    ("encoder", "sequence_classification"): _CLASSIFIER,
    ("encoder", "token_classification"): _CLASSIFIER,
    ("encoder", "question_answering"): ("loss", "start_logits", "end_logits", "hidden_states", "attentions"),
    ("encoder-decoder", None): ("last_hidden_state", *_SEQ2SEQ),
    ("encoder-decoder", "lm"): ("loss", "logits", *_SEQ2SEQ),
    ("encoder-decoder", "sequence_classification"): ("loss", "logits", *_SEQ2SEQ),
}


@dataclass
class ModelOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V) for LMs, (B, labels) / (B, T, labels) for classifiers
    last_hidden_state: torch.Tensor | None = None  # (B, T, H): the body's last layer (decoder's for seq2seq)
    pooler_output: torch.Tensor | None = None  # (B, H): BERT pooler
    start_logits: torch.Tensor | None = None  # (B, T): extractive QA
    end_logits: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, H): encoder-decoder models
    cache: Any = None  # the KV cache to pass back (`use_cache=True`)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (B, T, H) each: embeddings, then each layer
    attentions: tuple[torch.Tensor, ...] | None = None  # (B, nh, T, Tk) each
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # (B, nh, T, S) each
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if type(value) is Deferred:
            value = value()
            object.__setattr__(self, name, value)
        return value

    @property
    def past_key_values(self) -> Any:
        return self.cache

    def _order(self) -> tuple[str, ...]:
        return self.__dict__.get("order") or tuple(f.name for f in fields(self))

    def keys(self) -> list[str]:
        """The fields that are set, in transformers' order for this output's kind."""
        return [name for name in self._order() if getattr(self, name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        """transformers' `return_dict=False` tuple: the fields that are set, in its order."""
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key == "past_key_values":
                key = "cache"
            if key not in {f.name for f in fields(self)}:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


def ordered(out: ModelOutput, family: str, head: str | None) -> ModelOutput:
    """`out` answering as transformers' output class of (family, head)."""
    out.__dict__["order"] = ORDERS[(family, head)]
    return out
