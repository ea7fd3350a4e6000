"""BART checkpoints (transformers' `BartModel`, `BartForConditionalGeneration`, `BartForSequenceClassification`).

Post-norm encoder-decoder (Lewis et al. 2020), learned positions whose table has 2 extra rows in front
(`BartLearnedPositionalEmbedding`: position p reads row p + 2), a LayerNorm on the embeddings of each
stack (`layernorm_embedding`), optional sqrt(d_model) embedding scale, erf GELU, biases everywhere,
an LM head tied to `shared` plus the `final_logits_bias` buffer, and a classification head over the
decoder state at the last EOS. Head classes nest the body under `model.`. The two stacks may differ in
depth, heads and MLP width (distilled checkpoints); the decoder's are its own ModelConfig fields.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ModelConfig
from .base import Dialect, Key, Recipe, Rule, fused
from .keys import activation, common_keys

EMBEDDINGS = "shared.weight|encoder.embed_tokens.weight|decoder.embed_tokens.weight"
LAYERDROP = (" (LayerDrop, skipping layers at random in training, is not implemented; inference is unaffected: "
             "pass 0.0 for it to load)")
UNTIED = (" (untied, transformers 5.24 gives the encoder, the decoder and the LM head embedding matrices of their "
          "own; triformers shares one)")


def decoder_size(encoder_key: str) -> Any:
    """Key load for a decoder size: None (the encoder's, and following it) unless it differs."""
    return lambda value, read: None if value == read[encoder_key] else value


class BartDialect(Dialect):
    model_type = "bart"
    family = "encoder-decoder"
    recipe = Recipe("text_infilling", "roberta",  # BART decodes from </s> and ends with </s> forced
                    special_ids=(("decoder_start_token_id", "eos_token_id"), ("forced_eos_token_id", "eos_token_id")))
    base_prefix = "model."
    lora_targets = ("q_proj", "v_proj")
    architectures = {None: "BartModel", "lm": "BartForConditionalGeneration",
                     "sequence_classification": "BartForSequenceClassification"}
    # the tied LM head (a copy of `shared`) and fairseq's version buffers
    ignore = (r"^lm_head\.weight$", r"^(encoder|decoder)\.version$")
    # BartConfig (transformers 5.24 configuration_bart.py); second names: its attribute_map, read from config.json too
    keys = (
        Key("vocab_size", "vocab_size", int, 50265),
        Key("max_position_embeddings", "max_positions", int, 1024),
        Key("encoder_layers|num_hidden_layers", "num_layers", int, 12),
        Key("encoder_ffn_dim", "intermediate_size", int, 4096),
        Key("encoder_attention_heads|num_attention_heads", "num_heads", int, 16),
        Key("decoder_layers", "num_decoder_layers", int, 12),
        Key("decoder_ffn_dim", "decoder_intermediate_size", int, 4096, load=decoder_size("encoder_ffn_dim"),
            save=lambda c: c.decoder_intermediate_size or c.intermediate_size),
        Key("decoder_attention_heads", "num_decoder_heads", int, 16, load=decoder_size("encoder_attention_heads"),
            save=lambda c: c.decoder_heads),
        Key("encoder_layerdrop", None, float, 0.0, only=(0.0,), why=LAYERDROP),
        Key("decoder_layerdrop", None, float, 0.0, only=(0.0,), why=LAYERDROP),
        Key("activation_function", "activation", str, "gelu", **activation()),
        Key("d_model|hidden_size", "hidden_size", int, 1024),
        Key("dropout", "dropout", float, 0.1),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("activation_dropout", "activation_dropout", float, 0.0),
        Key("init_std", "initializer_range", float, 0.02),
        Key("classifier_dropout", "classifier_dropout", float, 0.0),
        Key("scale_embedding", "embedding_scale", bool, False,
            load=lambda value, read: math.sqrt(read["d_model"]) if value else 1.0,
            save=lambda c: c.embedding_scale != 1.0),
        Key("is_encoder_decoder", None, bool, True, only=(True,)),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True, only=(True,), why=UNTIED),
        *common_keys(pad=1, bos=0, eos=2, decoder_start=2, forced_eos=2, num_labels=3,
                     fields=("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
                             "forced_eos_token_id")),
    )
    # BART's nn.LayerNorm default eps (config.json has no key for it); positions read row p + 2
    fixed = dict(position_offset=2, norm_eps=1e-5, norm_placement="post", embedding_norm=True, final_logits_bias=True,
                 classifier="dense_tanh", classifier_token="eos")

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
