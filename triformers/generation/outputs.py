"""What `generate(..., return_dict_in_generate=True)` returns: transformers' output classes (v5.24
`generation/utils.py`), with its field names, read as attributes, as `out["sequences"]`, or by position.

`scores` are the processed next-token scores of each step (log-probabilities for beam search), `logits`
the raw ones, each a tuple of (rows, vocab) float32 tensors; `sequences_scores` the final beam scores
(with `output_scores`); `beam_indices` (rows, new tokens) which beam each token came from. Attentions and
hidden states are not produced yet (generate refuses `output_attentions` / `output_hidden_states`), and
the cache is not handed out: those fields are None.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


class _Output:
    """Dict-like access as transformers' ModelOutput: keys are the fields that are not None."""

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    @property
    def past_key_values(self) -> None:
        """transformers' former name of `cache`."""
        return self.cache


@dataclass
class GenerateDecoderOnlyOutput(_Output):
    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    attentions: tuple | None = None
    hidden_states: tuple | None = None
    cache: Any = None


@dataclass
class GenerateEncoderDecoderOutput(_Output):
    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple | None = None
    encoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    decoder_hidden_states: tuple | None = None
    cache: Any = None


@dataclass
class GenerateBeamDecoderOnlyOutput(_Output):
    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    attentions: tuple | None = None
    hidden_states: tuple | None = None
    cache: Any = None


@dataclass
class GenerateBeamEncoderDecoderOutput(_Output):
    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    encoder_attentions: tuple | None = None
    encoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    decoder_hidden_states: tuple | None = None
    cache: Any = None


def make_output(encoder_decoder: bool, beam: bool, **values: Any) -> _Output:
    """The output class transformers returns for this kind of model and search."""
    if beam:
        cls = GenerateBeamEncoderDecoderOutput if encoder_decoder else GenerateBeamDecoderOnlyOutput
    else:
        cls = GenerateEncoderDecoderOutput if encoder_decoder else GenerateDecoderOnlyOutput
    return cls(**values)


class StepRecorder:
    """The per-step scores and logits `return_dict_in_generate` asks for (each list None when not asked)."""

    def __init__(self, output_scores: bool, output_logits: bool):
        self.scores: list | None = [] if output_scores else None
        self.logits: list | None = [] if output_logits else None

    def add(self, scores: torch.Tensor, logits: torch.Tensor) -> None:
        if self.scores is not None:
            self.scores.append(scores)
        if self.logits is not None:
            self.logits.append(logits)

    def scores_so_far(self) -> tuple | None:
        """What stopping criteria receive as `scores` (None unless scores are returned, as in transformers)."""
        return tuple(self.scores) if self.scores is not None else None

    def fields(self) -> dict[str, Any]:
        return {"scores": self.scores_so_far(), "logits": tuple(self.logits) if self.logits is not None else None}


def recorder_for(options: Any) -> StepRecorder | None:
    if not options.return_dict_in_generate:
        return None
    return StepRecorder(options.output_scores, options.output_logits)
