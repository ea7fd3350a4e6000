"""`question-answering` (extractive): the best answer spans of a context, with their character offsets.

transformers v5 dropped this pipeline; this one keeps the behaviour of its v4 QuestionAnsweringPipeline.
A context longer than the model is read in overlapping windows: (question, context piece) pairs of at
most `max_seq_len` tokens whose context pieces overlap by `doc_stride` tokens (the tokenizer's overflow
with stride). In each window the start and end logits are softmaxed over the context tokens (and the
CLS token, whose start x end probability is the "no answer" score); a span (s, e) with
s <= e < s + max_answer_len scores p_start[s] * p_end[e]. The best `top_k` spans over all windows win.
With `align_to_words` (default, as in transformers) an answer covers whole words; `start`/`end` index
the context string, so `context[start:end] == answer`.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Encoding
from tokenizers import Tokenizer as Backend

from ..auto import AutoModelForQuestionAnswering
from ..errors import InputError
from ..tokenization.batch import pad_ids
from .base import Pipeline, chunks


def windower(tokenizer: Any) -> Backend:
    """A private copy of a tokenizer's backend for windowing (truncation with stride stays switched on)."""
    backend = Backend.from_str(tokenizer.backend.to_str())
    backend.no_padding()
    return backend


def stride_windows(backend: Backend, question: str, context: str, max_length: int, stride: int) -> list[Encoding]:
    """(question, context piece) encodings of at most max_length tokens, pieces overlapping by stride."""
    backend.enable_truncation(max_length, stride=stride, strategy="only_second")
    try:
        first = backend.encode(question, context)
    except Exception as err:  # the backend raises a bare Exception when the question alone is too long
        raise InputError(f"question-answering: the question {question[:60]!r} does not fit in max_seq_len="
                         f"{max_length} with room for the context ({err})") from None
    return [first, *first.overflowing]


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    auto_class = AutoModelForQuestionAnswering

    families, heads = ("encoder",), ("question_answering",)

    def check_model(self) -> None:
        super().check_model()
        self.windower = windower(self.tokenizer)

    def __call__(self, inputs: Any = None, *args: Any, question: str | list[str] | None = None,
                 context: str | list[str] | None = None, **kwargs: Any) -> Any:
        if inputs is None:
            if question is None or context is None:
                raise InputError("question-answering needs question= and context= (or {'question', 'context'} dicts)")
            if isinstance(question, str) != isinstance(context, str):
                raise InputError("question-answering: give question and context both as strings or both as lists")
            if isinstance(question, str):
                inputs = {"question": question, "context": context}
            else:
                if len(question) != len(context):
                    raise InputError(f"question-answering: {len(question)} questions but {len(context)} contexts")
                inputs = [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
        return super().__call__(inputs, *args, **kwargs)

    def windows(self, question: str, context: str, max_seq_len: int, doc_stride: int) -> list[Encoding]:
        if not isinstance(question, str) or not isinstance(context, str) or not question.strip() or not context:
            raise InputError(f"question-answering: question and context must be non-empty strings, "
                             f"got {question!r} and {context!r}")
        return stride_windows(self.windower, question, context, max_seq_len, doc_stride)

    def run(self, items: list[Any], batch_size: int, top_k: int = 1, doc_stride: int | None = None,
            max_answer_len: int = 15, max_seq_len: int | None = None, max_question_len: int = 64,
            handle_impossible_answer: bool = False, align_to_words: bool = True) -> list[Any]:
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride >= max_seq_len:
            raise InputError(f"question-answering: doc_stride ({doc_stride}) must be below max_seq_len ({max_seq_len})")
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"question-answering: {name} must be a positive integer, got {value!r}")
        results = []
        for item in items:
            if not isinstance(item, dict) or "question" not in item or "context" not in item:
                raise InputError(f"question-answering takes {{'question': ..., 'context': ...}} dicts, got {item!r}")
            context = item["context"]
            windows = self.windows(item["question"], context, max_seq_len, doc_stride)
            answers, null_score = [], 1.0
            for group in chunks(windows, batch_size):
                start_logits, end_logits = self.logits(group)
                for window, start, end in zip(group, start_logits, end_logits, strict=True):
                    spans, null = self.window_spans(window, start, end, top_k, max_answer_len)
                    null_score = min(null_score, null)
                    answers += [self.answer(window, context, s, e, score, align_to_words) for s, e, score in spans]
            if handle_impossible_answer:
                answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
            answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
            if not answers:
                raise InputError(f"question-answering: no answer span fits in the context {context[:40]!r}")
            results.append(answers[0] if top_k == 1 else answers)
        return results

    def logits(self, windows: list[Encoding]) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits (B, T) for a batch of windows, padded on the right."""
        ids, mask = pad_ids([w.ids for w in windows], self.tokenizer.pad_token_id or 0, device=self.device)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.tokenizer.model_input_names:
            inputs["token_type_ids"] = pad_ids([w.type_ids for w in windows], 0, device=self.device)[0]
        out = self.model(**inputs)
        return out.start_logits.float().cpu(), out.end_logits.float().cpu()

    def window_spans(self, window: Encoding, start: torch.Tensor, end: torch.Tensor, top_k: int,
                     max_answer_len: int) -> tuple[list[tuple[int, int, float]], float]:
        """The window's best spans (token start, token end, score) and its no-answer score."""
        n = len(window.ids)
        context = torch.tensor([s == 1 for s in window.sequence_ids])  # (n,)
        allowed = context.clone()
        cls_id = self.tokenizer.cls_token_id
        cls = [i for i, t in enumerate(window.ids) if cls_id is not None and t == cls_id]
        allowed[cls] = True  # CLS takes part in the softmax: it carries the "no answer" probability
        p_start = torch.softmax(start[:n].masked_fill(~allowed, -10000.0), -1)
        p_end = torch.softmax(end[:n].masked_fill(~allowed, -10000.0), -1)
        null = float(p_start[0] * p_end[0])
        scores = p_start[:, None] * p_end[None, :]  # (n, n): start x end
        valid = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(
            torch.ones(n, n, dtype=torch.bool), diagonal=max_answer_len)
        valid &= context[:, None] & context[None, :]
        scores = scores.masked_fill(~valid, -1.0).flatten()
        best = scores.topk(min(top_k, int(valid.sum()))).indices.tolist()
        return [(i // n, i % n, float(scores[i])) for i in best], null

    @staticmethod
    def answer(window: Encoding, context: str, start: int, end: int, score: float, align_to_words: bool) -> dict:
        first, last = window.offsets[start][0], window.offsets[end][1]
        if align_to_words:
            words = (window.token_to_word(start), window.token_to_word(end))
            if None not in words:
                first = window.word_to_chars(words[0], 1)[0]
                last = window.word_to_chars(words[1], 1)[1]
        return {"score": score, "start": first, "end": last, "answer": context[first:last]}
