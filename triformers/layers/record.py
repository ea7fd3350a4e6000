"""What one forward call records besides its result: each stack's hidden states and attention weights.

transformers returns `hidden_states` (the embeddings' output, then each layer's, the last after the final norm)
and `attentions` / `cross_attentions` (softmax weights, which SDPA never forms) when asked. A model that is asked
sets a `Recorder` for the call (a context variable, so concurrent calls in other threads are not affected);
each `Stack` opens a `Frame` in it and `Attention` computes its weights explicitly (the eager path) while one is
set with `eager`. Without a recorder (the default) no layer does any extra work.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

_CURRENT: ContextVar[Recorder | None] = ContextVar("triformers_recorder", default=None)


@dataclass
class Frame:
    """What one stack recorded in one call."""

    stack: Any
    hidden_states: list[torch.Tensor] = field(default_factory=list)
    attentions: list[torch.Tensor] = field(default_factory=list)  # (B, nh, T, Tk) per layer
    cross_attentions: list[torch.Tensor] = field(default_factory=list)  # (B, nh, T, S) per layer


@dataclass
class Recorder:
    hidden_states: bool = False
    attentions: bool = False
    eager: bool = False  # attention through explicit softmax weights (attn_implementation="eager" or attentions)
    frames: list[Frame] = field(default_factory=list)

    def frame(self, stack: Any) -> Frame | None:
        """The frame of `stack` in this call (the last it opened), or None."""
        return next((f for f in reversed(self.frames) if f.stack is stack), None)


def current() -> Recorder | None:
    return _CURRENT.get()


def open_frame(stack: Any) -> Frame | None:
    """A new frame for `stack` when this call records, else None."""
    recorder = _CURRENT.get()
    if recorder is None or not (recorder.hidden_states or recorder.attentions):
        return None
    recorder.frames.append(Frame(stack))
    return recorder.frames[-1]


def record_attention(weights: torch.Tensor, cross: bool) -> None:
    recorder = _CURRENT.get()
    if recorder is not None and recorder.attentions and recorder.frames:
        frame = recorder.frames[-1]
        (frame.cross_attentions if cross else frame.attentions).append(weights)


@contextmanager
def recording(recorder: Recorder | None) -> Iterator[Recorder | None]:
    """Make `recorder` the current one for the calls inside (None: leave things as they are)."""
    if recorder is None:
        yield None
        return
    token = _CURRENT.set(recorder)
    try:
        yield recorder
    finally:
        _CURRENT.reset(token)
