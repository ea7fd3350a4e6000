"""DecoderModel: the decoder-only family (GPT-2, BLOOM): causal LM and sequence-classification heads.

With a `KVCache`, a call processes only the new tokens; `attention_mask` then covers past + new
positions, as in transformers. `logits_to_keep=1` computes the LM head for the last position only
(what generation needs), saving a vocabulary-sized matmul per prompt token. A caller feeding many
steps passes one `plan` (masks and positions for all of them, `Stack.plan`) instead of a mask per step.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..layers.attention import KVCache
from ..layers.block import Stack
from ..layers.embedding import Embedding
from ..layers.linear import Linear, linear
from ..layers.masks import MaskPlan
from .base import TransformerModel
from .heads import SequenceClassifier, causal_lm_loss, select_token, sequence_classification_loss
from .outputs import ModelOutput


class DecoderModel(TransformerModel):
    family = "decoder"
    heads = (None, "lm", "sequence_classification")

    def __init__(self, config: ModelConfig, head: str | None = "lm"):
        super().__init__(config, head)
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.decoder = Stack(config, config.num_layers, causal=True)
        untied = head == "lm" and not config.tie_word_embeddings
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False) if untied else None
        self.classifier = SequenceClassifier(config) if head == "sequence_classification" else None

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is not None:  # untied, or a quantized copy of the tied matrix
            return self.lm_head(hidden)
        return linear(hidden, self.embed_tokens.weight)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                cache: KVCache | None = None, logits_to_keep: int = 0, check: bool = True,
                plan: MaskPlan | None = None, cache_position: torch.Tensor | None = None) -> ModelOutput:
        past = cache.length if cache is not None else 0
        if check:
            self.check_inputs(input_ids, attention_mask, past=past)
        hidden = self.decoder(self.embed_tokens(input_ids), input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids, cache=cache, plan=plan,
                              cache_position=cache_position)  # (B, T, H)
        out = ModelOutput(last_hidden_state=hidden)
        if self.head == "lm":
            out.logits = self.lm_logits(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
            if labels is not None:
                out.loss = causal_lm_loss(out.logits, labels)
        elif self.head == "sequence_classification":
            out.logits = self.classifier(select_token(hidden, "last", input_ids, self.config))
            if labels is not None:
                out.loss = sequence_classification_loss(out.logits, labels, self.config)
        return out
