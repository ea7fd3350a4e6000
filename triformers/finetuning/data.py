"""Fine-tuning data: reading task files, naming labels, padding batches, and SQuAD's answer scoring.

Files: CSV / TSV with a header line, JSONL (one record per line), a JSON list, or SQuAD-style JSON
(`data[].paragraphs[].qas[]`, v1 or v2). Labels may be names or integer ids; `label_names` decides the
id order (see `triformers.finetune`). Answer scoring follows SQuAD's official evaluate-v2.0.py.
Files are read through the guarded reader (regular files only, a size cap, strict JSON with a nesting
cap), and every record is checked for its task's fields and their types where it is read: an error
names the file and the record (or line).
"""

from __future__ import annotations

import collections
import csv
import importlib
import io
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
from ..io.files import decode_utf8, parse_json, read_bytes
from ..tokenization.batch import pad_ids

Feature = dict[str, Any]  # one example's model inputs as lists / ints, padded by `PaddingCollator`
MAX_DATA_BYTES = 4 * 2**30  # records are held in memory; a data file beyond this is refused


class FinetuneError(TriformersError, ValueError):
    """A data file or option cannot be fine-tuned on (what is wrong and where)."""


# ---- reading data ---------------------------------------------------------------------------------------
def _text(path: Path) -> str:
    return decode_utf8(read_bytes(path, "data file", MAX_DATA_BYTES, FinetuneError), f"data file {path}", FinetuneError)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV / TSV (header line) or JSONL file, or the list in a JSON file; each a JSON object."""
    path = Path(path)
    text = _text(path)
    if path.suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix == ".tsv" else ",")
        try:
            records = list(reader)
        except csv.Error as err:
            raise FinetuneError(f"{path}:{reader.line_num}: not CSV ({err})") from None
        for number, record in enumerate(records, 1):
            if None in record:
                raise FinetuneError(f"{path}: record {number} has more fields than the header line names")
        return records
    if path.suffix == ".json":
        records = parse_json(text, f"data file {path}", FinetuneError)
        if not isinstance(records, list):
            raise FinetuneError(f"{path}: expected a JSON list of records")
        lines = list(range(1, len(records) + 1))
    else:
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        records = [parse_json(line, f"{path}:{n} (a JSON line)", FinetuneError) for n, line in numbered]
        lines = [n for n, _ in numbered]
    for number, record in zip(lines, records, strict=True):
        if not isinstance(record, dict):
            where = f"record {number}" if path.suffix == ".json" else f"line {number}"
            raise FinetuneError(f"{path}: {where} is a {type(record).__name__}, not an object of fields")
    return records


def _squad_question(qa: Any, paragraph: dict, path: Path) -> dict[str, Any]:
    context = paragraph.get("context")
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not isinstance(context, str):
        raise FinetuneError(f"{path}: a question lacks a string 'question' or its paragraph a 'context'")
    answers, where = qa.get("answers", []), f"{path}: question {qa.get('id')!r}"
    if not isinstance(answers, list):
        raise FinetuneError(f"{where}: 'answers' must be a list")
    out = []
    for answer in answers:
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        start = int(start) if isinstance(start, str) and start.isdigit() else start
        if not isinstance(text, str) or not text or type(start) is not int:
            raise FinetuneError(f"{where}: each answer needs a non-empty 'text' and an integer 'answer_start'")
        if not 0 <= start <= len(context) - len(text):
            raise FinetuneError(f"{where}: answer_start {start} (+ {len(text)} characters) lies outside its "
                                f"context of {len(context)} characters")
        out.append((text, start))
    return {"id": qa.get("id"), "question": qa["question"], "context": context, "answers": out}


def read_squad(path: str | Path) -> list[dict[str, Any]]:
    """SQuAD (v1 or v2) JSON -> {id, question, context, answers: [(text, answer_start), ...]} per question."""
    path = Path(path)
    tree = parse_json(_text(path), f"data file {path}", FinetuneError)
    try:
        paragraphs = [p for article in tree["data"] for p in article["paragraphs"]]
        questions = [(qa, p) for p in paragraphs for qa in p["qas"]]
    except (KeyError, TypeError) as err:
        raise FinetuneError(f"{path}: not SQuAD-style JSON (data[].paragraphs[].qas[]): {err!r}") from None
    if not all(isinstance(p, dict) for _, p in questions):
        raise FinetuneError(f"{path}: not SQuAD-style JSON (each paragraph an object)")
    return [_squad_question(qa, p, path) for qa, p in questions]


def is_text(value: Any) -> bool:
    return isinstance(value, str)


def is_label(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_words(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_labels(value: Any) -> bool:
    return isinstance(value, list) and all(is_label(v) for v in value)


KINDS = {is_text: "a string", is_label: "a label name or integer id", is_words: "a list of strings",
         is_labels: "a list of label names or ids"}


def require(records: list[dict], fields: dict[str, Callable[[Any], bool]], path: str,
            optional: dict[str, Callable[[Any], bool]] | None = None) -> list[dict]:
    """Records that each have `fields` (non-empty, of the kind their check accepts) and, where present,
    `optional` fields of theirs; a FinetuneError names the file, the record and the field."""
    if not records:
        raise FinetuneError(f"{path}: no records")
    for number, record in enumerate(records, 1):
        missing = [k for k in fields if k not in record or record[k] in (None, "")]
        if missing:
            raise FinetuneError(f"{path}: record {number} lacks {missing} (has {sorted(record)})")
        for key, check in [*fields.items(), *(optional or {}).items()]:
            if record.get(key) not in (None, "") and not check(record[key]):
                raise FinetuneError(f"{path}: record {number}: {key!r} must be {KINDS[check]}, "
                                    f"got {record[key]!r:.80}")
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

