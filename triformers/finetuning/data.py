"""Fine-tuning data: reading task files, naming labels, padding batches, and SQuAD's answer scoring.

Files: CSV / TSV with a header line, JSONL (one record per line), a JSON list, or SQuAD-style JSON
(`data[].paragraphs[].qas[]`, v1 or v2). Labels may be names or integer ids; `label_names` decides the
id order (see `triformers.finetune`). Answer scoring follows SQuAD's official evaluate-v2.0.py.
"""

from __future__ import annotations

import collections
import csv
import importlib
import json
import re
import string
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import TriformersError
from ..tokenization.batch import pad_ids

Feature = dict[str, Any]  # one example's model inputs as lists / ints, padded by `PaddingCollator`


class FinetuneError(TriformersError, ValueError):
    """A data file or option cannot be fine-tuned on (what is wrong and where)."""


# ---- reading data ---------------------------------------------------------------------------------------
def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV / TSV (header line) or JSONL file, or the list in a JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"data file {path} does not exist")
    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        records = json.loads(text)
        if not isinstance(records, list):
            raise FinetuneError(f"{path}: expected a JSON list of records")
        return records
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise FinetuneError(f"{path}:{number}: not a JSON line ({err})") from None
    return records


def read_squad(path: str | Path) -> list[dict[str, Any]]:
    """SQuAD (v1 or v2) JSON -> {id, question, context, answers: [(text, answer_start), ...]} per question."""
    try:
        articles = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
        return [{"id": qa.get("id"), "question": qa["question"], "context": paragraph["context"],
                 "answers": [(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])]}
                for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise FinetuneError(f"{path}: not SQuAD-style JSON (data[].paragraphs[].qas[]): {err!r}") from None


def require(records: list[dict], keys: Sequence[str], path: str) -> list[dict]:
    if not records:
        raise FinetuneError(f"{path}: no records")
    for number, record in enumerate(records, 1):
        missing = [k for k in keys if k not in record or record[k] in (None, "")]
        if missing:
            raise FinetuneError(f"{path}: record {number} lacks {missing} (has {sorted(record)})")
    return records


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


def given_labels(value: str | list[str] | None) -> list[str] | None:
    """FinetuneOptions.labels as names in id order: a list, a file with one name per line, or "a,b,c"."""
    if not value:
        return None
    if isinstance(value, str):
        path = Path(value)
        value = path.read_text(encoding="utf-8").splitlines() if path.is_file() else value.split(",")
    return [name.strip() for name in value if name.strip()]


def label_names(values: Sequence[Any], given: list[str] | None, config: ModelConfig, first: str | None = None
                ) -> list[str]:
    """Names in id order for the labels seen in the training data (see the module docstring)."""
    if all(_is_id(v) for v in values):
        count = max(int(v) for v in values) + 1
        if given:
            if count > len(given):
                raise FinetuneError(f"label id {count - 1} but only {len(given)} label names were given")
            return list(given)
        named = config.id2label and len(config.id2label) >= count
        return [config.labels()[i] for i in range(len(config.id2label))] if named else \
            [f"LABEL_{i}" for i in range(count)]
    if any(_is_id(v) for v in values) and not given:
        raise FinetuneError("labels mix names and integer ids; give the names in id order (--labels)")
    seen = {str(v) for v in values}
    if given:
        return list(given)
    own = [config.labels()[i] for i in range(len(config.id2label))]
    if own and seen <= set(own):
        return own
    return sorted(seen, key=lambda name: (name != first, name))


def label_index(names: list[str]) -> Callable[[Any], int]:
    index = {name: i for i, name in enumerate(names)}

    def to_id(value: Any) -> int:
        if isinstance(value, str) and value in index:
            return index[value]
        if _is_id(value) and int(value) < len(names):
            return int(value)
        raise FinetuneError(f"label {value!r} is not one of the labels {names}")
    return to_id


# ---- batching -------------------------------------------------------------------------------------------
@dataclass
class PaddingCollator:
    """Features -> tensors: lists padded to the longest (input ids with pad, labels with -100, rest 0)."""

    pad_token_id: int

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        batch = {}
        for key in features[0]:
            values = [feature[key] for feature in features]
            if isinstance(values[0], list):
                value = self.pad_token_id if key == "input_ids" else -100 if key == "labels" else 0
                batch[key] = pad_ids(values, value)[0]
            else:
                batch[key] = torch.tensor(values, dtype=torch.long)
        return batch


def model_inputs(encoding: dict, index: int | slice, model_family: str) -> Feature:
    """One example's inputs (or, with slice(None), the whole batch's) from a batched tokenizer output;
    token types only for encoders."""
    keys = ("input_ids", "attention_mask", "token_type_ids") if model_family == "encoder" else \
        ("input_ids", "attention_mask")
    return {key: encoding[key][index] for key in keys if key in encoding}


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode and no gradients for a metric pass; training mode again afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def metric_library(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FinetuneError(f"this metric needs {package}: pip install 'triformers[finetune]'") from None


# ---- SQuAD's answer scoring (the official evaluate-v2.0.py) ----------------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:  # SQuAD v2: "no answer" scores 1 only against "no answer"
        return float(predicted == expected)
    same = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)

