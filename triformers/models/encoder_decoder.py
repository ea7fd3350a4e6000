"""EncoderDecoderModel: the sequence-to-sequence family (T5, flan-T5, BART).

One token embedding matrix is shared by the encoder, the decoder and (when tied) the LM head.
With labels and no decoder_input_ids, the decoder inputs are the labels shifted right behind
`decoder_start_token_id`, -100 turned into pad, as transformers does; without labels (the body alone,
sequence classification) they are the input_ids shifted right, as `BartModel` does.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import InputError
from ..layers.attention import KVCache
from ..layers.block import Stack
from ..layers.embedding import Embedding
from ..layers.linear import Linear, linear
from ..layers.masks import MaskPlan
from .base import TransformerModel
from .heads import SequenceClassifier, lm_outputs, plain_head_weight, select_token, sequence_classification_loss
from .inputs import as_indices, check_context
from .outputs import ModelOutput
from .surface import Call, embeddings


def shift_right(labels: torch.Tensor, start_token_id: int, pad_token_id: int) -> torch.Tensor:
    shifted = labels.new_full(labels.shape, start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class EncoderDecoderModel(TransformerModel):
    family = "encoder-decoder"
    heads = (None, "lm", "sequence_classification")

    def __init__(self, config: ModelConfig, head: str | None = "lm"):
        super().__init__(config, head)
        # BART's pad embedding gets no gradient; T5 starts decoding from the pad token, whose embedding must learn
        pad = config.pad_token_id if config.decoder_start_token_id != config.pad_token_id else None
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        self.encoder = Stack(config, config.num_layers, causal=False)
        # the decoder's own heads and MLP width (BART allows them to differ from the encoder's)
        self.decoder = Stack(config.decoder_stack(), config.decoder_layers, causal=True, cross=True)
        untied = head == "lm" and not config.tie_word_embeddings
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False) if untied else None
        if head == "lm" and config.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        else:
            self.final_logits_bias = None
        self.classifier = SequenceClassifier(config) if head == "sequence_classification" else None

    def init_weights(self, modules=None) -> None:
        super().init_weights(modules)
        if self.final_logits_bias is not None and (modules is None or self in modules):
            self.final_logits_bias.zero_()

    def encode(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        embeds, (input_ids, attention_mask, _, _) = embeddings(self, input_ids, inputs_embeds, attention_mask,
                                                               "input_ids")  # (B, S, H)
        return self.encoder(embeds, input_ids=input_ids, attention_mask=attention_mask)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.output_scale != 1.0:  # T5 v1.0: d_model**-0.5, tied or not (as transformers)
            hidden = hidden * self.config.output_scale
        # an untied head (or a quantized copy, or an adapter's wrapper of it) is called as the module it is
        logits = self.lm_head(hidden) if self.lm_head is not None else linear(hidden, self.embed_tokens.weight)
        return logits + self.final_logits_bias if self.final_logits_bias is not None else logits

    def lm_matrix(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """(scaled hidden, weight, bias) when `lm_logits(hidden)` is one matmul of those (tied, or an untied
        Linear; BART's final_logits_bias as the bias), for the fused logits + loss (`heads.lm_outputs`)."""
        weight = plain_head_weight(self)
        if weight is None:
            return None
        if self.config.output_scale != 1.0:
            hidden = hidden * self.config.output_scale
        bias = None if self.final_logits_bias is None else self.final_logits_bias.view(-1).to(weight.dtype)
        return hidden, weight, bias

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The decoder inputs the forward makes from `labels` (transformers' name: DataCollatorForSeq2Seq calls it)."""
        return shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, encoder_outputs: torch.Tensor | None = None,
                cache: KVCache | None = None, logits_to_keep: int = 0, check: bool = True,
                plan: MaskPlan | None = None, cache_position: torch.Tensor | None = None, *,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> ModelOutput | tuple:
        config = self.config
        call = Call(self, cache=cache, past_key_values=past_key_values, use_cache=use_cache,
                    output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                    return_dict=return_dict)
        given_encoder_outputs = encoder_outputs
        if isinstance(encoder_outputs, (ModelOutput, tuple, list)):  # transformers passes its output object
            encoder_outputs = encoder_outputs[0]
        with call.record():
            if encoder_outputs is None:
                encoder_outputs = self.encode(input_ids, attention_mask, inputs_embeds)  # (B, S, H)
            elif check:
                check_context(encoder_outputs, attention_mask, config.hidden_size)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                source = labels if self.head == "lm" else input_ids
                if source is None:
                    raise InputError("give decoder_input_ids (or "
                                     + ("labels" if self.head == "lm" else "input_ids") + ", from which they are made)")
                if config.decoder_start_token_id is None or config.pad_token_id is None:
                    raise InputError(f"{config.model_type} config has no decoder_start_token_id / pad_token_id "
                                     "to make decoder_input_ids from; pass decoder_input_ids")
                source = as_indices(source, "labels" if self.head == "lm" else "input_ids")
                decoder_input_ids = shift_right(source, config.decoder_start_token_id, config.pad_token_id)
            past = call.cache.length if call.cache is not None else 0
            embeds, (decoder_input_ids, decoder_attention_mask, _, _) = embeddings(
                self, decoder_input_ids, decoder_inputs_embeds, decoder_attention_mask, "decoder_input_ids", past,
                check)  # (B, T, H)
            if check and embeds.shape[0] != encoder_outputs.shape[0]:
                raise InputError(f"decoder_input_ids has {embeds.shape[0]} rows but the encoder output "
                                 f"{encoder_outputs.shape[0]}")
            cache = call.kv_cache(self.decoder, embeds.shape[0], embeds.shape[1])
            hidden = self.decoder(embeds, input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                                  context=encoder_outputs, context_mask=attention_mask, cache=cache, plan=plan,
                                  cache_position=cache_position)  # (B, T, H)
        out = ModelOutput(last_hidden_state=hidden, encoder_last_hidden_state=encoder_outputs)
        if self.head == "lm":
            out.logits, out.loss = lm_outputs(self, hidden[:, -logits_to_keep:] if logits_to_keep else hidden,
                                              labels, shift=False)
        elif self.head == "sequence_classification":
            out.logits = self.classifier(select_token(hidden, "eos", input_ids, config))
            if labels is not None:
                out.loss = sequence_classification_loss(out.logits, labels, config)
        return call.finish(out, given_encoder_outputs)
