"""EncoderModel: the encoder-only family (BERT, RoBERTa), with its task heads.

Heads: `mlm` (masked LM), `sequence_classification`, `token_classification`, `question_answering`
(start/end logits), or None (hidden states and the pooler output, as transformers' AutoModel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..errors import InputError
from ..layers.block import Stack
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from .base import TransformerModel
from .heads import (MLMHead, SequenceClassifier, select_token, sequence_classification_loss, token_head_outputs,
                    token_loss)
from .outputs import Deferred, ModelOutput
from .surface import Call, embeddings, positions_for_embeds


class EncoderModel(TransformerModel):
    family = "encoder"
    heads = (None, "mlm", "sequence_classification", "token_classification", "question_answering")

    def __init__(self, config: ModelConfig, head: str | None = None):
        super().__init__(config, head)
        H = config.hidden_size
        self.embed_tokens = Embedding(config.vocab_size, H, padding_idx=config.pad_token_id)
        self.encoder = Stack(config, config.num_layers, causal=False)
        pooled_head = head is None or (head == "sequence_classification" and config.classifier == "pooled")
        self.pooler = Linear(H, H) if config.pooler and pooled_head else None
        self.mlm = MLMHead(config) if head == "mlm" else None
        self.classifier = SequenceClassifier(config) if head == "sequence_classification" else None
        if head in ("token_classification", "question_answering"):
            p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
            self.drop = Dropout(p)
            self.token_classifier = Linear(H, config.num_labels if head == "token_classification" else 2)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, use_cache: bool | None = None) -> ModelOutput | tuple:
        call = Call(self, cache=None, past_key_values=None, use_cache=use_cache, output_attentions=output_attentions,
                    output_hidden_states=output_hidden_states, return_dict=return_dict)
        embeds, (input_ids, attention_mask, position_ids, token_type_ids) = embeddings(
            self, input_ids, inputs_embeds, attention_mask, "input_ids", position_ids=position_ids,
            token_type_ids=token_type_ids)  # (B, T, H)
        if inputs_embeds is not None and token_type_ids is not None:
            self.check_token_types(token_type_ids, embeds.shape[:2])
        position_ids = positions_for_embeds(self, input_ids, embeds, position_ids)
        with call.record():
            hidden = self.encoder(embeds, input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids, position_ids=position_ids)  # (B, T, H)
        out = ModelOutput(last_hidden_state=hidden)
        if self.pooler is not None:
            out.pooler_output = torch.tanh(self.pooler(hidden[:, 0]))
        if self.head == "mlm":
            weight = self.embed_tokens.weight
            if labels is not None and self.training:  # loss from the labelled positions; logits if read
                out.loss = self.mlm.loss(hidden, weight, labels)
                out.logits = Deferred(lambda: self.mlm(hidden, weight), hidden.device.type)
            else:
                out.logits = self.mlm(hidden, weight)
                if labels is not None:
                    out.loss = token_loss(out.logits, labels)
        elif self.head == "sequence_classification":
            token = out.pooler_output if self.config.classifier == "pooled" else \
                select_token(hidden, self.config.classifier_token, input_ids, self.config)
            out.logits = self.classifier(token)
            if labels is not None:
                out.loss = sequence_classification_loss(out.logits, labels, self.config)
        elif self.head in ("token_classification", "question_answering"):
            token_head_outputs(out, self.head, hidden, self.token_classifier, self.drop, labels, start_positions,
                               end_positions)
        return call.finish(out)

    def check_token_types(self, token_type_ids: torch.Tensor, shape: torch.Size) -> None:
        """A clear error for token types of the wrong shape (B, T) or outside the type vocabulary."""
        types = self.config.type_vocab_size
        if not isinstance(token_type_ids, torch.Tensor) or token_type_ids.shape != shape:
            got = tuple(token_type_ids.shape) if isinstance(token_type_ids, torch.Tensor) else token_type_ids
            raise InputError(f"token_type_ids must have the shape of input_ids {tuple(shape)}, got {got}")
        bad = (token_type_ids < 0) | (token_type_ids >= max(types, 1))
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            raise InputError(f"token_type_ids[{b}, {t}] = {int(token_type_ids[b, t])} is outside the "
                             f"{types} token types of this model (0..{max(types - 1, 0)})")

    def embed(self, input_ids, attention_mask=None, pooling: str = "mean", normalize: bool = True):
        """Sentence embeddings: mean (over non-pad tokens) or CLS pooling, optionally L2-normalised."""
        hidden = self(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        if pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids))[..., None]
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(vectors, dim=-1) if normalize else vectors
