"""BART checkpoints (transformers' `BartModel`, `BartForConditionalGeneration`, `BartForSequenceClassification`).

Post-norm encoder-decoder (Lewis et al. 2020), learned positions whose table has 2 extra rows in front
(`BartLearnedPositionalEmbedding`: position p reads row p + 2), a LayerNorm on the embeddings of each
stack (`layernorm_embedding`), optional sqrt(d_model) embedding scale, erf GELU, biases everywhere,
an LM head tied to `shared` plus the `final_logits_bias` buffer, and a classification head over the
decoder state at the last EOS. Head classes nest the body under `model.`.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Dialect, Recipe, Rule, common_from_hf, common_to_hf, fused, read
from .bert import ACTIVATION_BACK, activation

EMBEDDINGS = "shared.weight|encoder.embed_tokens.weight|decoder.embed_tokens.weight"


def same_for_both(hf: dict[str, Any], key: str, where: str, default: int) -> int:
    """encoder_X and decoder_X must agree: one ModelConfig size serves both stacks."""
    encoder = read(hf, f"encoder_{key}", int, where, default)
    decoder = read(hf, f"decoder_{key}", int, where, default)
    if encoder != decoder:
        raise ConfigError(f"{where}: encoder_{key} ({encoder}) differs from decoder_{key} ({decoder}); "
                          "triformers needs the same value for both stacks")
    return encoder


class BartDialect(Dialect):
    model_type = "bart"
    family = "encoder-decoder"
    recipe = Recipe("text_infilling", "roberta",  # BART decodes from </s> and ends with </s> forced
                    special_ids=(("decoder_start_token_id", "eos_token_id"), ("forced_eos_token_id", "eos_token_id")))
    base_prefix = "model."
    architectures = {None: "BartModel", "lm": "BartForConditionalGeneration",
                     "sequence_classification": "BartForSequenceClassification"}
    # the tied LM head (a copy of `shared`) and fairseq's version buffers
    ignore = (r"^lm_head\.weight$", r"^(encoder|decoder)\.version$")

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        d_model = read(hf, "d_model", int, where, 1024)
        common = common_from_hf(hf, where)
        if "id2label" not in hf and "num_labels" not in hf:
            common["num_labels"] = 3  # BartConfig's default (MNLI)
        defaults = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                        forced_eos_token_id=2)
        for key, value in defaults.items():
            if key not in hf:
                common[key] = value
        return ModelConfig(
            model_type=self.model_type,
            vocab_size=read(hf, "vocab_size", int, where, 50265),
            hidden_size=d_model,
            num_layers=read(hf, "encoder_layers", int, where, 12),
            num_decoder_layers=read(hf, "decoder_layers", int, where, 12),
            num_heads=same_for_both(hf, "attention_heads", where, 16),
            intermediate_size=same_for_both(hf, "ffn_dim", where, 4096),
            max_positions=read(hf, "max_position_embeddings", int, where, 1024),
            position_offset=2,
            norm_eps=1e-5,  # BART's nn.LayerNorm default; config.json has no key for it
            norm_placement="post",
            embedding_norm=True,
            embedding_scale=math.sqrt(d_model) if read(hf, "scale_embedding", bool, where, False) else 1.0,
            activation=activation(hf, "activation_function", where, "gelu"),
            bias=True,
            tie_word_embeddings=read(hf, "tie_word_embeddings", bool, where, True),
            final_logits_bias=True,
            classifier="dense_tanh",
            classifier_token="eos",
            dropout=read(hf, "dropout", float, where, 0.1),
            attention_dropout=read(hf, "attention_dropout", float, where, 0.0),
            activation_dropout=read(hf, "activation_dropout", float, where, 0.0),
            classifier_dropout=read(hf, "classifier_dropout", float, where, 0.0),
            initializer_range=read(hf, "init_std", float, where, 0.02),
            **common,
        )

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        out = dict(
            vocab_size=config.vocab_size, d_model=config.hidden_size, encoder_layers=config.num_layers,
            decoder_layers=config.decoder_layers, max_position_embeddings=config.max_positions,
            scale_embedding=config.embedding_scale != 1.0, activation_function=ACTIVATION_BACK[config.activation],
            dropout=config.dropout, attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            classifier_dropout=config.classifier_dropout, init_std=config.initializer_range,
            tie_word_embeddings=config.tie_word_embeddings, is_encoder_decoder=True, **common_to_hf(config),
        )
        for stack in ("encoder", "decoder"):
            out[f"{stack}_attention_heads"] = config.num_heads
            out[f"{stack}_ffn_dim"] = config.intermediate_size
        return out

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        rules = [Rule("embed_tokens.weight", (EMBEDDINGS,))]
        for stack in ("encoder", "decoder"):
            ours, layer = f"{stack}.layers.{{}}.", f"{stack}.layers.{{}}."
            attention = {"attn": "self_attn", **({"cross_attn": "encoder_attn"} if stack == "decoder" else {})}
            rules.append(Rule(f"{stack}.positions.weight", (f"{stack}.embed_positions.weight",)))
            for kind in ("weight", "bias"):
                rules += [
                    Rule(f"{stack}.embed_norm.{kind}", (f"{stack}.layernorm_embedding.{kind}",)),
                    Rule(f"{ours}attn.qkv.{kind}", tuple(f"{layer}self_attn.{p}_proj.{kind}" for p in "qkv"),
                         layers=stack, **fused(3)),
                    Rule(f"{ours}attn_norm.{kind}", (f"{layer}self_attn_layer_norm.{kind}",), layers=stack),
                    Rule(f"{ours}mlp.up.{kind}", (f"{layer}fc1.{kind}",), layers=stack),
                    Rule(f"{ours}mlp.down.{kind}", (f"{layer}fc2.{kind}",), layers=stack),
                    Rule(f"{ours}mlp_norm.{kind}", (f"{layer}final_layer_norm.{kind}",), layers=stack),
                ]
                rules += [Rule(f"{ours}{mine}.out.{kind}", (f"{layer}{theirs}.out_proj.{kind}",), layers=stack)
                          for mine, theirs in attention.items()]
            if stack == "decoder":
                for kind in ("weight", "bias"):
                    rules += [
                        Rule(f"{ours}cross_attn.q.{kind}", (f"{layer}encoder_attn.q_proj.{kind}",), layers=stack),
                        Rule(f"{ours}cross_attn.kv.{kind}", tuple(f"{layer}encoder_attn.{p}_proj.{kind}" for p in "kv"),
                             layers=stack, **fused(2)),
                        Rule(f"{ours}cross_norm.{kind}", (f"{layer}encoder_attn_layer_norm.{kind}",), layers=stack),
                    ]
        if head == "lm":
            rules += [Rule("lm_head.weight", ("lm_head.weight",), head="lm"),
                      Rule("final_logits_bias", ("final_logits_bias",), head="lm")]
        elif head == "sequence_classification":
            names = {"classifier.dense": "classification_head.dense", "classifier.out": "classification_head.out_proj"}
            rules += [Rule(f"{mine}.{kind}", (f"{theirs}.{kind}",), head=head)
                      for mine, theirs in names.items() for kind in ("weight", "bias")]
        return rules
