"""`zero-shot-classification`: score candidate labels that the model was never trained on.

With a sequence-classification model trained on NLI (the usual case, e.g. an MNLI checkpoint) this is
transformers' ZeroShotClassificationPipeline (5.x): each (text, hypothesis_template.format(label)) pair
is classified; the "entailment" column (the id2label entry starting with "entail") scored by a softmax
over the labels, or, with `multi_label=True` (or one label), entailment vs contradiction per label.

Beyond transformers, a plain language model works too, by comparing label log-likelihoods:
- decoder-only: log P(" " + hypothesis | text), the hypothesis tokens following the text;
- encoder-decoder: log P(hypothesis | text) with the text as encoder input and the hypothesis as target.
Single-label scores are a softmax over the labels' summed log-likelihoods; multi-label scores are each
label's mean per-token probability exp(mean log p), which does not depend on the other labels.
"""

from __future__ import annotations

from typing import Any

import torch

from ..auto import AutoModelForSequenceClassification
from ..errors import InputError
from ..tokenization.batch import pad_ids
from .base import Pipeline, chunks


def parse_labels(labels: str | list[str] | None) -> list[str]:
    """A comma-separated string or a list, as transformers accepts."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    if not labels:
        raise InputError("zero-shot-classification needs candidate_labels (a list or a comma-separated string)")
    return list(labels)


class ZeroShotClassificationPipeline(Pipeline):
    task = "zero-shot-classification"

    auto_class = AutoModelForSequenceClassification  # or a causal / seq2seq LM: see pipeline()
    heads = ("sequence_classification", "lm")

    @property
    def entailment_id(self) -> int:
        for label, index in self.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1  # transformers' fallback: the last column

    def __call__(self, sequences: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise InputError(f"zero-shot-classification: unexpected extra arguments {args!r}")
        return super().__call__(sequences, **kwargs)

    def run(self, items: list[str], batch_size: int, candidate_labels: str | list[str] | None = None,
            hypothesis_template: str = "This example is {}.", multi_label: bool = False) -> list[dict]:
        labels = parse_labels(candidate_labels)
        if hypothesis_template.format(labels[0]) == hypothesis_template:
            raise InputError(f"zero-shot-classification: hypothesis_template {hypothesis_template!r} has no {{}} "
                             "for the label")
        for item in items:
            if not isinstance(item, str) or not item:
                raise InputError(f"zero-shot-classification takes non-empty strings, got {item!r}")
        pairs = [(text, hypothesis_template.format(label)) for text in items for label in labels]
        if self.model.head == "sequence_classification":
            scores = self.nli_scores(pairs, batch_size, len(labels), multi_label)
        else:
            scores = self.likelihood_scores(pairs, batch_size, len(labels), multi_label)
        results = []
        for text, row in zip(items, scores, strict=True):
            order = sorted(range(len(labels)), key=lambda i: float(row[i]), reverse=True)
            results.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(row[i]) for i in order]})
        return results

    def nli_scores(self, pairs: list[tuple[str, str]], batch_size: int, n_labels: int,
                   multi_label: bool) -> torch.Tensor:
        logits = []
        for group in chunks(pairs, batch_size):
            batch = self.encode([p[0] for p in group], [p[1] for p in group], truncation="only_first")
            logits.append(self.model(**self.model_inputs(batch)).logits.float().cpu())
        logits = torch.cat(logits).view(-1, n_labels, logits[0].shape[-1])  # (texts, labels, classes)
        entail = self.entailment_id
        if multi_label or n_labels == 1:
            contradiction = -1 if entail == 0 else 0
            return torch.softmax(logits[..., [contradiction, entail]], -1)[..., 1]
        return torch.softmax(logits[..., entail], -1)

    def likelihood_scores(self, pairs: list[tuple[str, str]], batch_size: int, n_labels: int,
                          multi_label: bool) -> torch.Tensor:
        totals, counts = [], []
        for group in chunks(pairs, batch_size):
            total, count = (self.decoder_loglik if self.model.family == "decoder" else self.seq2seq_loglik)(group)
            totals.append(total)
            counts.append(count)
        total = torch.cat(totals).view(-1, n_labels)  # (texts, labels): summed log-probabilities
        if multi_label:
            return torch.exp(total / torch.cat(counts).view(-1, n_labels))
        return torch.softmax(total, -1)

    def decoder_loglik(self, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log P(hypothesis tokens | text) and the number of hypothesis tokens, per pair."""
        rows, starts = [], []
        for text, hypothesis in pairs:
            context = self.tokenizer(text)["input_ids"]
            continuation = self.tokenizer(" " + hypothesis, add_special_tokens=False)["input_ids"]
            rows.append(context + continuation)
            starts.append(len(context))
        ids, mask = pad_ids(rows, self.tokenizer.pad_token_id or 0, device=self.device)
        logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        targets = torch.full_like(ids, -100)
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            targets[i, max(start, 1):len(row)] = ids[i, max(start, 1):len(row)]  # position 0 has no prediction
        return self.gather(logprobs[:, :-1], targets[:, 1:])

    def seq2seq_loglik(self, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.encode([p[0] for p in pairs], truncation=True)
        targets = self.tokenizer([p[1] for p in pairs], padding=True, return_tensors="pt")
        labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100).to(self.device)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
        return self.gather(torch.log_softmax(logits.float(), -1), labels)

    @staticmethod
    def gather(logprobs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, V) log-probabilities and (B, T) targets (-100: skip) -> summed log-prob and count per row."""
        keep = targets != -100
        picked = logprobs.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * keep
        return picked.sum(-1).cpu(), keep.sum(-1).clamp(min=1).cpu()
