"""`text-classification`: one label distribution per text (or text pair), as transformers'
TextClassificationPipeline (5.x) gives it.

Scores: softmax over the labels; sigmoid for multi-label models and single-logit models; the raw logits
for regression (`problem_type`), unless `function_to_apply` ("softmax" | "sigmoid" | "none") says
otherwise. Without `top_k` each text gets its best {label, score}; with `top_k=n` the n best, sorted;
`top_k=None` all labels, sorted. Labels come from the config's id2label.
"""

from __future__ import annotations

from typing import Any

import torch

from ..auto import AutoModelForSequenceClassification
from ..errors import InputError
from .base import Pipeline

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET = object()  # top_k not given: transformers' "legacy" single best label


def score_function(config: Any, function_to_apply: str | None) -> str:
    """transformers' choice of softmax / sigmoid / none from the config, unless the caller names one."""
    if function_to_apply is not None:
        name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
        if name not in FUNCTIONS:
            raise InputError(f"text-classification: function_to_apply must be one of {FUNCTIONS}, "
                             f"got {function_to_apply!r}")
        return name
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits: torch.Tensor, name: str) -> torch.Tensor:
    logits = logits.float()
    if name == "softmax":
        return torch.softmax(logits, dim=-1)
    if name == "sigmoid":
        return torch.sigmoid(logits)
    return logits


class TextClassificationPipeline(Pipeline):
    task = "text-classification"
    auto_class = AutoModelForSequenceClassification

    heads = ("sequence_classification",)

    def is_single(self, inputs: list | tuple) -> bool:
        # transformers reads [[text, pair]] as one text pair
        return len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) and len(inputs[0]) == 2

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        legacy = "top_k" not in kwargs and "top_k" not in self.defaults
        result = super().__call__(inputs, **kwargs)
        # transformers wraps a single text's best label in a list, but not its top_k list
        return [result] if legacy and isinstance(inputs, str) else result

    def run(self, items: list[Any], batch_size: int, top_k: int | None | object = _UNSET,
            function_to_apply: str | None = None, **tokenizer_kwargs: Any) -> list[Any]:
        if top_k is not _UNSET and top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
            raise InputError(f"text-classification: top_k must be a positive integer or None, got {top_k!r}")
        function = score_function(self.config, function_to_apply)
        labels = self.config.labels()
        texts, pairs = split_pairs(items)
        results = []
        for start in range(0, len(texts), batch_size):
            group = texts[start:start + batch_size]
            group_pairs = pairs[start:start + batch_size] if pairs is not None else None
            batch = self.encode(group, group_pairs, **tokenizer_kwargs)
            scores = apply_function(self.model(**self.model_inputs(batch)).logits, function).cpu()  # (B, labels)
            for row in scores:
                if top_k is _UNSET:
                    best = int(row.argmax())
                    results.append({"label": labels[best], "score": float(row[best])})
                    continue
                ranked = sorted(({"label": labels[i], "score": float(s)} for i, s in enumerate(row.tolist())),
                                key=lambda entry: entry["score"], reverse=True)
                results.append(ranked[:top_k] if top_k is not None else ranked)
        return results


def split_pairs(items: list[Any]) -> tuple[list[str], list[str] | None]:
    """Texts, or {"text", "text_pair"} dicts / [text, pair] lists, into texts and pairs."""
    texts, pairs = [], []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
            pairs.append(None)
        elif isinstance(item, dict) and "text" in item:
            texts.append(item["text"])
            pairs.append(item.get("text_pair"))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            texts.append(item[0])
            pairs.append(item[1])
        else:
            raise InputError("text-classification takes texts, [text, pair] lists or "
                             f"{{'text': ..., 'text_pair': ...}} dicts, got {item!r}")
    if all(p is None for p in pairs):
        return texts, None
    if any(p is None for p in pairs):
        raise InputError("text-classification: mix of texts with and without text_pair in one call")
    return texts, pairs

