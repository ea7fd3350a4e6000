"""The four fine-tuning tasks: how each reads its files, makes features and scores predictions.

See the table in `triformers.finetuning.finetune`. Token labels sit on the first sub-word of each word, -100 on
continuation pieces and special tokens (as transformers' `run_ner.py`). A QA context longer than
`max_length` is cut into windows that overlap by `doc_stride` tokens; a window without the whole
answer learns the "no answer" position (the first token), as in transformers' `run_qa.py`, and the
held-out answers come from the question-answering pipeline over the same windows.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
from torch import nn

from ..auto import (AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                    AutoModelForTokenClassification)
from ..config import ModelConfig
from ..errors import InputError
from ..pipelines.question_answering import QuestionAnsweringPipeline, stride_windows, windower
from ..tokenization import Tokenizer
from .data import (Feature, FinetuneError, evaluating, given_labels, is_label, is_labels, is_text, is_words,
                   label_index, label_names, metric_library, model_inputs, read_records, read_squad, require,
                   squad_exact, squad_f1)
from .options import FinetuneOptions


class Task(abc.ABC):
    """One fine-tuning task: how to read its files, make features and score predictions."""

    name = ""
    auto_class: Any = None
    label_first: str | None = None

    def __init__(self, options: FinetuneOptions, tokenizer: Tokenizer):
        self.options, self.tokenizer = options, tokenizer
        self.family = "encoder"
        self.names: list[str] = []

    @abc.abstractmethod
    def read(self, path: str) -> list[dict[str, Any]]:
        """The file's records, checked for the task's fields."""

    def label_values(self, records: list[dict]) -> list[Any]:
        """The labels whose names go into id2label (none for QA and seq2seq)."""
        return []

    def config_overrides(self, train: list[dict], config: ModelConfig) -> dict[str, Any]:
        values = self.label_values(train)
        if not values:
            return {}
        self.names = label_names(values, given_labels(self.options.labels), config, self.label_first)
        self.to_id = label_index(self.names)
        return {"id2label": dict(enumerate(self.names))}

    @abc.abstractmethod
    def features(self, records: list[dict]) -> list[Feature]:
        """Model inputs and labels, one per example (QA: per window)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, records: list[dict]) -> dict[str, float]:
        """The task's held-out metrics for `model` on `records`."""

    def batches(self, records: list[dict]):
        size = self.options.training.per_device_eval_batch_size
        return (records[i:i + size] for i in range(0, len(records), size))

    def encode(self, texts: list, pairs: list | None = None, **kwargs: Any):
        return self.tokenizer(texts, pairs, truncation=True, max_length=self.options.max_length, **kwargs)


class TextClassification(Task):
    name, auto_class = "text-classification", AutoModelForSequenceClassification

    def read(self, path):
        return require(read_records(path), {"text": is_text, "label": is_label}, path, {"text_pair": is_text})

    def label_values(self, records):
        return [r["label"] for r in records]

    def _pairs(self, records):
        pairs = [r.get("text_pair") or None for r in records]
        if any(pairs) and not all(pairs):
            raise FinetuneError("text_pair is given for some records but not all")
        return pairs if all(pairs) else None

    def features(self, records):
        encoding = self.encode([r["text"] for r in records], self._pairs(records))
        return [{**model_inputs(encoding, i, self.family), "labels": self.to_id(r["label"])}
                for i, r in enumerate(records)]

    def predict(self, model, records) -> np.ndarray:
        predictions = []
        with evaluating(model):
            for batch in self.batches(records):
                encoding = self.encode([r["text"] for r in batch], self._pairs(batch), padding=True,
                                       return_tensors="pt")
                inputs = {k: v.to(model.device) for k, v in model_inputs(encoding, slice(None), self.family).items()}
                predictions.append(model(**inputs).logits.argmax(-1).cpu().numpy())
        return np.concatenate(predictions)

    def evaluate(self, model, records):
        metrics = metric_library("sklearn.metrics", "scikit-learn")
        gold, predicted = [self.to_id(r["label"]) for r in records], self.predict(model, records)
        return {"accuracy": float(metrics.accuracy_score(gold, predicted)),
                "macro_f1": float(metrics.f1_score(gold, predicted, average="macro", zero_division=0))}


class TokenClassification(Task):
    name, auto_class, label_first = "token-classification", AutoModelForTokenClassification, "O"

    def read(self, path):
        records = require(read_records(path), {"tokens": is_words, "ner_tags": is_labels}, path)
        for number, r in enumerate(records, 1):
            if len(r["tokens"]) != len(r["ner_tags"]):
                raise FinetuneError(f"{path}: record {number} has {len(r['tokens'])} tokens but "
                                    f"{len(r['ner_tags'])} ner_tags")
        return records

    def label_values(self, records):
        return [tag for r in records for tag in r["ner_tags"]]

    def aligned(self, encoding, index: int, tags: list[int]) -> list[int]:
        """Word labels on the first sub-word of each word; -100 on continuations and special tokens."""
        labels, previous = [], None
        for word in encoding.word_ids(index):
            labels.append(-100 if word is None or word == previous else tags[word])
            previous = word
        return labels

    def features(self, records):
        encoding = self.encode([r["tokens"] for r in records], is_split_into_words=True)
        return [{**model_inputs(encoding, i, self.family),
                 "labels": self.aligned(encoding, i, [self.to_id(t) for t in r["ner_tags"]])}
                for i, r in enumerate(records)]

    def predict(self, model, records) -> list[list[str]]:
        """Predicted tag names per word that survived truncation (the first sub-word's prediction)."""
        out = []
        with evaluating(model):
            for batch in self.batches(records):
                encoding = self.encode([r["tokens"] for r in batch], is_split_into_words=True, padding=True,
                                       return_tensors="pt")
                inputs = {k: v.to(model.device) for k, v in model_inputs(encoding, slice(None), self.family).items()}
                ids = model(**inputs).logits.argmax(-1).tolist()
                for i in range(len(batch)):
                    first = self.aligned(encoding, i, list(range(len(batch[i]["tokens"]))))
                    out.append([self.names[ids[i][t]] for t, word in enumerate(first) if word != -100])
        return out

    def evaluate(self, model, records):
        seqeval = metric_library("seqeval.metrics", "seqeval")
        predicted = self.predict(model, records)
        gold = [[self.names[self.to_id(tag)] for tag in r["ner_tags"][:len(words)]]  # the words that fit
                for r, words in zip(records, predicted, strict=True)]
        flat = [(g == p) for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=True)]
        return {"precision": float(seqeval.precision_score(gold, predicted, zero_division=0)),
                "recall": float(seqeval.recall_score(gold, predicted, zero_division=0)),
                "f1": float(seqeval.f1_score(gold, predicted, zero_division=0)),
                "token_accuracy": float(np.mean(flat)) if flat else 0.0}


class QuestionAnswering(Task):
    name, auto_class = "question-answering", AutoModelForQuestionAnswering

    def read(self, path):
        return read_squad(path)

    def windows(self, question: str, context: str):
        """(question, context piece) encodings of at most max_length tokens, pieces overlapping by doc_stride."""
        if not hasattr(self, "windower"):
            self.windower = windower(self.tokenizer)
        try:
            return stride_windows(self.windower, question, context, self.options.max_length,
                                  self.options.doc_stride)
        except InputError as err:
            raise FinetuneError(str(err)) from None

    @staticmethod
    def answer_tokens(window, answer: tuple[str, int] | None) -> tuple[int, int]:
        """Token (start, end) of the answer's characters in this window; (0, 0) when it is not all inside."""
        context = [i for i, sequence in enumerate(window.sequence_ids) if sequence == 1]
        if answer is None or not context:
            return 0, 0
        first_char, end_char = answer[1], answer[1] + len(answer[0])
        offsets = window.offsets  # characters of the context string for context tokens
        if offsets[context[0]][0] > first_char or offsets[context[-1]][1] < end_char:
            return 0, 0
        start = next(i for i in context if offsets[i][1] > first_char)
        end = next(i for i in reversed(context) if offsets[i][0] < end_char)
        return start, end

    def features(self, records):
        keep = ("input_ids", "attention_mask", "token_type_ids") if "token_type_ids" in \
            self.tokenizer.model_input_names else ("input_ids", "attention_mask")
        out = []
        for r in records:
            answer = r["answers"][0] if r["answers"] else None  # training reads the first answer, as run_qa.py
            for window in self.windows(r["question"], r["context"]):
                start, end = self.answer_tokens(window, answer)
                inputs = {"input_ids": window.ids, "attention_mask": window.attention_mask,
                          "token_type_ids": window.type_ids}
                out.append({**{k: list(inputs[k]) for k in keep}, "start_positions": start, "end_positions": end})
        return out

    def evaluate(self, model, records):
        impossible = any(not r["answers"] for r in records)
        reader = QuestionAnsweringPipeline(model, self.tokenizer,
                                           batch_size=self.options.training.per_device_eval_batch_size)
        with evaluating(model):
            answers = reader([{"question": r["question"], "context": r["context"]} for r in records],
                             max_seq_len=self.options.max_length, doc_stride=self.options.doc_stride,
                             handle_impossible_answer=impossible)
        gold = [[text for text, _ in r["answers"]] or [""] for r in records]
        return {"exact_match": float(np.mean([max(squad_exact(a["answer"], g) for g in golds)
                                              for a, golds in zip(answers, gold, strict=True)])),
                "f1": float(np.mean([max(squad_f1(a["answer"], g) for g in golds)
                                     for a, golds in zip(answers, gold, strict=True)]))}


class Seq2Seq(Task):
    name, auto_class = "seq2seq", AutoModelForSeq2SeqLM

    def read(self, path):
        return require(read_records(path), {"source": is_text, "target": is_text}, path)

    def sources(self, records):
        return [self.options.source_prefix + r["source"] for r in records]

    def features(self, records):
        inputs = self.encode(self.sources(records))
        targets = self.tokenizer([r["target"] for r in records], truncation=True,
                                 max_length=self.options.max_target_length)
        return [{**model_inputs(inputs, i, "encoder-decoder"), "labels": targets["input_ids"][i]}
                for i in range(len(records))]

    def predict(self, model, records) -> list[str]:
        out = []
        with evaluating(model):
            for batch in self.batches(records):
                encoding = self.encode(self.sources(batch), padding=True, return_tensors="pt")
                ids = model.generate(encoding["input_ids"].to(model.device),
                                     attention_mask=encoding["attention_mask"].to(model.device),
                                     max_new_tokens=self.options.max_target_length, num_beams=self.options.num_beams)
                out += [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out

    def evaluate(self, model, records):
        rouge = metric_library("rouge_score.rouge_scorer", "rouge-score")
        sacrebleu = metric_library("sacrebleu", "sacrebleu")
        predicted, gold = self.predict(model, records), [r["target"] for r in records]
        scorer = rouge.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        scores = [scorer.score(g, p) for g, p in zip(gold, predicted, strict=True)]
        metrics = {name: float(np.mean([s[name].fmeasure for s in scores])) for name in scorer.rouge_types}
        metrics["bleu"] = float(sacrebleu.corpus_bleu(predicted, [gold]).score)
        metrics["exact_match"] = float(np.mean([p == g.strip() for p, g in zip(predicted, gold, strict=True)]))
        return metrics


TASKS: dict[str, type[Task]] = {t.name: t for t in (TextClassification, TokenClassification, QuestionAnswering,
                                                      Seq2Seq)}

