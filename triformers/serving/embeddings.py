"""Sentence embeddings for /v1/embeddings: an encoder's last hidden states, mean-pooled over the real tokens
and normalised to unit length (sentence-transformers' recipe for all-MiniLM-L6-v2), in batches.

Inputs longer than the model's context are refused rather than truncated, as OpenAI's API refuses them.
A lock keeps one batch on the model at a time; the engine's decoding runs beside it.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError

BATCH = 32


class Embedder:
    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer, self.lock = model, tokenizer, threading.Lock()
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def dimensions(self) -> int:
        return self.model.config.hidden_size

    def embed(self, inputs: list[Any]) -> tuple[list[list[float]], int]:
        """(one unit vector per input, tokens read) for texts or token id lists."""
        ids = [self.tokenizer(x)["input_ids"] if isinstance(x, str) else list(x) for x in inputs]
        limit = self.model.max_length()
        for i, row in enumerate(ids):
            if limit is not None and len(row) > limit:
                raise InputError(f"input {i} is {len(row)} tokens long; this model reads at most {limit}")
        vectors: list[list[float]] = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(ids), BATCH):
                vectors += self._batch(ids[start:start + BATCH])
        return vectors, sum(len(row) for row in ids)

    def _batch(self, rows: list[list[int]]) -> list[list[float]]:
        length = max(len(r) for r in rows)
        input_ids = torch.tensor([r + [self.pad] * (length - len(r)) for r in rows], device=self.model.device)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=self.model.device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()  # (B, T, H)
        weights = mask[:, :, None].float()
        pooled = (hidden * weights).sum(1) / weights.sum(1)  # (B, H)
        return F.normalize(pooled, dim=-1).tolist()
