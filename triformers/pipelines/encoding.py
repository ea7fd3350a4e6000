"""Pipelines that read an encoder's outputs directly: `fill-mask` and `feature-extraction`.

Results match transformers' FillMaskPipeline and FeatureExtractionPipeline (5.x): fill-mask gives, per
mask, the `top_k` tokens by softmax probability with the filled-in sequence; feature extraction gives
the last hidden states as nested lists of shape (1, tokens, hidden). Beyond transformers, `pooling`
("mean" over real tokens, or "cls") and `normalize` turn them into one sentence vector.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..auto import AutoModel, AutoModelForMaskedLM
from ..errors import InputError
from .base import Pipeline, chunks, softmax


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    auto_class = AutoModelForMaskedLM

    families, heads = ("encoder",), ("mlm",)

    def check_model(self) -> None:
        super().check_model()
        if self.tokenizer.mask_token_id is None:
            raise InputError("fill-mask: the tokenizer defines no mask_token")

    def target_ids(self, targets: str | list[str]) -> list[int]:
        """Each target's id, or the first piece of its tokenization when it is not one token (as transformers)."""
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            index = vocab.get(target)
            if index is None:
                pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
                if not pieces:
                    continue
                index = pieces[0]
            ids.append(index)
        if not ids:
            raise InputError(f"fill-mask: none of the targets {targets!r} maps to a token")
        return sorted(set(ids))

    def run(self, items: list[str], batch_size: int, top_k: int = 5, targets: str | list[str] | None = None,
            tokenizer_kwargs: dict | None = None) -> list[Any]:
        if not isinstance(top_k, int) or top_k <= 0:
            raise InputError(f"fill-mask: top_k must be a positive integer, got {top_k!r}")
        target_ids = self.target_ids(targets) if targets is not None else None
        if target_ids is not None:
            top_k = min(top_k, len(target_ids))
        mask_id, pad_id = self.tokenizer.mask_token_id, self.tokenizer.pad_token_id
        results = []
        for group in chunks(items, batch_size):
            batch = self.encode(group, **(tokenizer_kwargs or {}))
            logits = self.model(**self.model_inputs(batch)).logits  # (B, T, V)
            for row, text in enumerate(group):
                ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
                masked = (ids == mask_id).nonzero().squeeze(-1)
                if masked.numel() == 0:
                    raise InputError(f"fill-mask: no mask token ({self.tokenizer.mask_token}) in input {text!r}")
                probs = softmax(logits[row][batch["attention_mask"][row].bool()][masked])  # (masks, V)
                if target_ids is not None:
                    probs = probs[:, target_ids]
                values, predictions = probs.topk(top_k)
                single = len(masked) == 1
                rows = []
                for i in range(len(masked)):
                    proposals = []
                    for score, index in zip(values[i].tolist(), predictions[i].tolist(), strict=True):
                        token = target_ids[index] if target_ids is not None else index
                        filled = ids.clone()
                        filled[masked[i]] = token
                        filled = filled[filled != pad_id] if pad_id is not None else filled
                        proposals.append({"score": score, "token": token,
                                          "token_str": self.tokenizer.decode([token]),
                                          "sequence": self.tokenizer.decode(filled, skip_special_tokens=single)})
                    rows.append(proposals)
                results.append(rows[0] if single else rows)
        return results


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"
    auto_class = AutoModel
    heads = (None, "lm", "mlm", "sequence_classification", "token_classification", "question_answering")

    def run(self, items: list[str], batch_size: int, pooling: str | None = None, normalize: bool = False,
            return_tensors: bool = False, truncation: bool | None = None,
            tokenize_kwargs: dict | None = None) -> list[Any]:
        if pooling not in (None, "mean", "cls"):
            raise InputError(f"feature-extraction: pooling must be None, 'mean' or 'cls', got {pooling!r}")
        kwargs = dict(tokenize_kwargs or {})
        if truncation is not None:
            kwargs["truncation"] = truncation
        results = []
        for group in chunks(items, batch_size):
            batch = self.encode(group, **kwargs)
            hidden = self.hidden_states(batch)  # (B, T, H)
            mask = batch["attention_mask"]
            for row in range(len(group)):
                real = mask[row].bool()
                tokens = hidden[row][real]  # (T_row, H): padding dropped, as with batch_size=1
                if pooling == "mean":
                    features = tokens.mean(0)
                elif pooling == "cls":
                    features = tokens[0]
                else:
                    features = tokens[None]  # (1, T, H), transformers' shape
                if normalize:
                    features = F.normalize(features.float(), dim=-1)
                results.append(features.cpu() if return_tensors else features.float().tolist())
        return results

    def hidden_states(self, batch: dict) -> torch.Tensor:
        """The last hidden states of the body; for encoder-decoder models, the encoder's."""
        if self.model.family == "encoder-decoder":
            return self.model.encode(batch["input_ids"], batch["attention_mask"])
        return self.model(**self.model_inputs(batch)).last_hidden_state
