"""DecoderModel: the decoder-only family (GPT-2, BLOOM, Llama, Mistral, Qwen, Gemma, Phi-3, GPT-NeoX, OPT).

Heads: `lm` (causal LM, with Gemma 2's final-logit softcap where the config has one),
`sequence_classification` (the last non-pad token, transformers' `...ForSequenceClassification`),
`token_classification` and `question_answering` (per-token logits, transformers' generic heads), or None.
With a `KVCache`, a call processes only the new tokens; `attention_mask` then covers past + new
positions, as in transformers. `logits_to_keep=1` computes the LM head for the last position only
(what generation needs), saving a vocabulary-sized matmul per prompt token. A caller feeding many
steps passes one `plan` (masks, positions and rotary tables for all of them, `Stack.plan`) instead of
a mask per step. `position_ids` count from 0 as transformers' do (OPT's table offset is added here).
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..layers.block import Stack
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.kv_cache import KVCache
from ..layers.linear import Linear, linear
from ..layers.masks import MaskPlan
from .base import TransformerModel
from .heads import (SequenceClassifier, lm_outputs, plain_head_weight, select_token, sequence_classification_loss,
                    token_head_outputs)
from .outputs import ModelOutput
from .surface import Call, embeddings


class DecoderModel(TransformerModel):
    family = "decoder"
    heads = (None, "lm", "sequence_classification", "token_classification", "question_answering")

    def __init__(self, config: ModelConfig, head: str | None = "lm"):
        super().__init__(config, head)
        E = config.embedding_width
        self.embed_tokens = Embedding(config.vocab_size, E)
        self.decoder = Stack(config, config.num_layers, causal=True)
        untied = head == "lm" and not config.tie_word_embeddings
        self.lm_head = Linear(E, config.vocab_size, bias=False) if untied else None
        self.classifier = SequenceClassifier(config) if head == "sequence_classification" else None
        if head in ("token_classification", "question_answering"):
            p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
            self.drop = Dropout(p)
            self.token_classifier = Linear(E, config.num_labels if head == "token_classification" else 2)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is not None:  # untied, or a quantized copy of the tied matrix
            logits = self.lm_head(hidden)
        else:
            logits = linear(hidden, self.embed_tokens.weight)
        cap = self.config.final_logit_softcap
        return torch.tanh(logits / cap) * cap if cap is not None else logits

    def lm_matrix(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None] | None:
        """(hidden, weight, bias) when `lm_logits(hidden)` is the one matmul hidden @ weight^T (tied, or an untied
        Linear: no softcap, no quantized or adapted head), for the fused logits + loss (`heads.lm_outputs`)."""
        weight = plain_head_weight(self)
        if self.config.final_logit_softcap is not None or weight is None:
            return None
        return hidden, weight, None

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                cache: KVCache | None = None, logits_to_keep: int = 0, check: bool = True,
                plan: MaskPlan | None = None, cache_position: torch.Tensor | None = None, *,
                inputs_embeds: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None) -> ModelOutput | tuple:
        call = Call(self, cache=cache, past_key_values=past_key_values, use_cache=use_cache,
                    output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                    return_dict=return_dict)
        past = call.cache.length if call.cache is not None else 0
        embeds, (input_ids, attention_mask, position_ids, _) = embeddings(
            self, input_ids, inputs_embeds, attention_mask, "input_ids", past, check, position_ids)  # (B, T, H)
        if position_ids is not None and self.config.position_offset:
            position_ids = position_ids + self.config.position_offset
        cache = call.kv_cache(self.decoder, embeds.shape[0], embeds.shape[1])
        with call.record():
            hidden = self.decoder(embeds, input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids, cache=cache, plan=plan,
                                  cache_position=cache_position)  # (B, T, H)
        out = ModelOutput(last_hidden_state=hidden)
        if self.head == "lm":
            out.logits, out.loss = lm_outputs(self, hidden[:, -logits_to_keep:] if logits_to_keep else hidden,
                                              labels, shift=True)
        elif self.head == "sequence_classification":
            out.logits = self.classifier(select_token(hidden, "last", input_ids, self.config))
            if labels is not None:
                out.loss = sequence_classification_loss(out.logits, labels, self.config)
        elif self.head in ("token_classification", "question_answering"):
            token_head_outputs(out, self.head, hidden, self.token_classifier, self.drop, labels, start_positions,
                               end_positions)
        return call.finish(out)
