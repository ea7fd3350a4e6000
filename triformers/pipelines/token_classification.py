"""`token-classification` (NER): a label per token, or entity groups with character offsets.

Follows transformers' TokenClassificationPipeline (5.x) step for step, so results are the same:
softmax per token; special tokens dropped; `aggregation_strategy`
- "none": every token with its best label, `index`, `word` (the token) and `start`/`end`;
- "simple": adjacent tokens with the same tag (B-/I- prefixes read as in transformers) merged into
  `entity_group`s scored by the mean of their token scores;
- "first" / "average" / "max": first the sub-word pieces of each word agree on one label (the first
  piece's, the mean of the pieces' distributions, or the piece with the highest score), then grouped.
A piece continues a word when the tokenizer marks continuation (WordPiece's "##": the piece is longer
than the text it covers), else by transformers' heuristic (no space before it). `start`/`end` index the
input string, so `text[start:end]` is the exact text of the entity. Labels in `ignore_labels`
(default ["O"]) are left out.
"""

from __future__ import annotations

from typing import Any

import torch

from ..auto import AutoModelForTokenClassification
from ..errors import InputError
from .base import Pipeline, chunks, softmax

STRATEGIES = ("none", "simple", "first", "average", "max")


def split_tag(label: str) -> tuple[str, str]:
    """("B" | "I", tag): a label without a B-/I- prefix counts as a continuation, as in transformers."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    auto_class = AutoModelForTokenClassification

    families, heads = ("encoder",), ("token_classification",)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        split = kwargs.get("is_split_into_words", self.defaults.get("is_split_into_words", False))
        if split and isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str):
            return super().__call__([inputs], **kwargs)  # one pre-split sentence: a batch of one, as transformers
        return super().__call__(inputs, **kwargs)

    def run(self, items: list[Any], batch_size: int, aggregation_strategy: str = "none",
            ignore_labels: list[str] | None = None, is_split_into_words: bool = False,
            delimiter: str = " ") -> list[list[dict]]:
        strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
        if strategy not in STRATEGIES:
            raise InputError(f"token-classification: aggregation_strategy must be one of {STRATEGIES}, "
                             f"got {aggregation_strategy!r}")
        ignore = ["O"] if ignore_labels is None else list(ignore_labels)
        truncation = bool(self.tokenizer.model_max_length and self.tokenizer.model_max_length > 0)
        results = []
        for group in chunks(items, batch_size):
            for item in group:
                if not isinstance(item, list if is_split_into_words else str):
                    kind = "a list of words" if is_split_into_words else "a string"
                    raise InputError(f"token-classification: each input must be {kind}, got {item!r}")
            batch = self.encode(group, truncation=truncation, return_special_tokens_mask=True,
                                return_offsets_mapping=True, is_split_into_words=is_split_into_words)
            offsets = batch.pop("offset_mapping")
            scores = softmax(self.model(**self.model_inputs(batch)).logits).cpu()  # (B, T, labels)
            for row, item in enumerate(group):
                sentence, word_starts = item, None
                if is_split_into_words:
                    sentence = delimiter.join(item)
                    word_starts, position = [], 0
                    for word in item:
                        word_starts.append(position)
                        position += len(word) + len(delimiter)
                pre = self.gather(sentence, batch, row, scores[row], offsets[row].tolist(), strategy, word_starts)
                entities = self.aggregate(pre, strategy)
                results.append([e for e in entities if e.get("entity", e.get("entity_group")) not in ignore])
        return results

    def gather(self, sentence: str, batch: dict, row: int, scores: torch.Tensor, offsets: list,
               strategy: str, word_starts: list[int] | None) -> list[dict]:
        """One record per real token: its piece, scores, character span and whether it continues a word."""
        ids = batch["input_ids"][row].tolist()
        special = batch["special_tokens_mask"][row].tolist()
        word_ids = batch.word_ids(row) if word_starts is not None else None
        word_aware = bool(getattr(self.tokenizer.backend.model, "continuing_subword_prefix", None))
        records = []
        for index, (token_id, token_scores) in enumerate(zip(ids, scores, strict=True)):
            if special[index]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(token_id))
            start, end = offsets[index]
            if word_ids is not None and word_ids[index] is not None:
                # pre-split words are encoded one by one: their offsets count from the word's start
                start, end = start + word_starts[word_ids[index]], end + word_starts[word_ids[index]]
            covered = sentence[start:end]
            if word_aware:
                is_subword = len(word) != len(covered)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word, is_subword = covered, False
            records.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": index,
                            "is_subword": is_subword})
        return records

    def aggregate(self, records: list[dict], strategy: str) -> list[dict]:
        labels = self.config.labels()
        if strategy in ("none", "simple"):
            entities = []
            for record in records:
                best = int(record["scores"].argmax())
                entities.append({"entity": labels[best], "score": float(record["scores"][best]),
                                 "index": record["index"], "word": record["word"],
                                 "start": record["start"], "end": record["end"]})
            if strategy == "none":
                return entities
        else:
            entities = [self.aggregate_word(word, strategy) for word in self.words(records)]
        return self.group(entities)

    @staticmethod
    def words(records: list[dict]) -> list[list[dict]]:
        words: list[list[dict]] = []
        for record in records:
            if words and record["is_subword"]:
                words[-1].append(record)
            else:
                words.append([record])
        return words

    def aggregate_word(self, pieces: list[dict], strategy: str) -> dict:
        """One label for all pieces of a word: first piece's, best-scoring piece's, or the mean distribution."""
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda piece: float(piece["scores"].max()))["scores"]
        else:
            scores = torch.stack([piece["scores"] for piece in pieces]).mean(0)
        best = int(scores.argmax())
        return {"entity": self.config.labels()[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([piece["word"] for piece in pieces]),
                "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def group(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities with the same tag form one group, unless the next one begins with B-."""
        groups: list[list[dict]] = []
        for entity in entities:
            bi, tag = split_tag(entity["entity"])
            if groups and tag == split_tag(groups[-1][-1]["entity"])[1] and bi != "B":
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [{"entity_group": members[0]["entity"].split("-", 1)[-1],
                 "score": sum(m["score"] for m in members) / len(members),
                 "word": self.tokenizer.convert_tokens_to_string([m["word"] for m in members]),
                 "start": members[0]["start"], "end": members[-1]["end"]} for members in groups]
