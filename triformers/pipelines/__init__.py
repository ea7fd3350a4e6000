"""Task pipelines over the Auto classes: `pipeline(task, model=...)` as in transformers.

    from triformers import pipeline
    ner = pipeline("token-classification", model="path/to/ner-model", aggregation_strategy="simple")
    ner("Hugging Face is in New York")        # [{"entity_group": "ORG", "start": 0, "end": 12, ...}, ...]

Tasks (aliases in brackets): fill-mask, text-generation, text2text-generation, summarization,
translation (translation_XX_to_YY), text-classification [sentiment-analysis], token-classification [ner],
question-answering, feature-extraction, zero-shot-classification. Keyword arguments given here are
defaults for every call; `batch_size` sets how many inputs run through the model at once.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from ..auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification
from ..config import ModelConfig
from ..dialects import get_dialect
from ..errors import InputError
from ..io.pretrained import locate
from ..models import TransformerModel
from ..tokenization import Tokenizer
from .base import Device, Pipeline, load, resolve_device, resolve_dtype
from .classification import TextClassificationPipeline
from .encoding import FeatureExtractionPipeline, FillMaskPipeline
from .generation import (SummarizationPipeline, Text2TextGenerationPipeline, TextGenerationPipeline,
                         TranslationPipeline)
from .question_answering import QuestionAnsweringPipeline
from .token_classification import TokenClassificationPipeline
from .zero_shot import ZeroShotClassificationPipeline

TASKS: dict[str, type[Pipeline]] = {cls.task: cls for cls in (
    FillMaskPipeline, TextGenerationPipeline, Text2TextGenerationPipeline, SummarizationPipeline,
    TranslationPipeline, TextClassificationPipeline, TokenClassificationPipeline, QuestionAnsweringPipeline,
    FeatureExtractionPipeline, ZeroShotClassificationPipeline)}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
_TRANSLATION = re.compile(r"translation_([A-Za-z-]+)_to_([A-Za-z-]+)")


def _zero_shot_class(config: ModelConfig) -> Any:
    """An NLI classifier when the config has an entailment label or the model is an encoder; else the LM."""
    family = get_dialect(config.model_type).family
    if family == "encoder" or any(label.lower().startswith("entail") for label in config.id2label.values()):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM if family == "decoder" else AutoModelForSeq2SeqLM


def pipeline(task: str, model: str | os.PathLike | TransformerModel | None = None,
             tokenizer: str | Tokenizer | None = None, device: Device = None,
             dtype: torch.dtype | str | None = None, **kwargs: Any) -> Pipeline:
    """A ready pipeline for `task` with `model` (a folder, hub id or loaded triformers model).

    tokenizer: a folder or Tokenizer (default: the model's folder). device: -1 / "cpu", a CUDA index or
    any torch device. dtype: "float32", "bfloat16", torch.float16, "auto", ... Other keyword arguments
    (batch_size, top_k, aggregation_strategy, max_new_tokens, ...) are defaults for every call.
    """
    if not isinstance(task, str):
        raise InputError(f"pipeline: task must be a string, got {task!r}")
    name = ALIASES.get(task, task)
    match = _TRANSLATION.fullmatch(name)
    if match:
        name = "translation"
        kwargs.setdefault("src_lang", match.group(1))
        kwargs.setdefault("tgt_lang", match.group(2))
    if name not in TASKS:
        raise InputError(f"pipeline: unknown task {task!r}; choose one of {', '.join(sorted([*TASKS, *ALIASES]))} "
                         "or translation_XX_to_YY")
    if model is None:
        raise InputError(f"pipeline({task!r}): give model=... (a folder, a hub id or a triformers model); "
                         "triformers has no default download per task")
    resolve_device(device), resolve_dtype(dtype)  # a bad name fails before anything is read
    cls = TASKS[name]
    auto_class = cls.auto_class
    if isinstance(model, (str, os.PathLike)):
        model = locate(model)  # resolved and its config read once, for the model and its tokenizer
        if cls is ZeroShotClassificationPipeline:
            auto_class = _zero_shot_class(model.config)
    loaded, tok = load(auto_class, model, tokenizer, dtype, name)
    return cls(loaded, tok, device=device, dtype=dtype, **kwargs)


__all__ = ["pipeline", "Pipeline", "TASKS", "FillMaskPipeline", "TextGenerationPipeline",
           "Text2TextGenerationPipeline", "SummarizationPipeline", "TranslationPipeline",
           "TextClassificationPipeline", "TokenClassificationPipeline", "QuestionAnsweringPipeline",
           "FeatureExtractionPipeline", "ZeroShotClassificationPipeline"]
