"""T5 v1.0, T5 v1.1 and flan-T5 checkpoints (transformers' `T5Model`, `T5ForConditionalGeneration`).

Pre-norm encoder-decoder with T5's RMS norm, relative position buckets owned by layer 0 of each stack
(bidirectional in the encoder, causal in the decoder, none in cross-attention), no q.k scaling, no
biases, `d_kv` that need not be d_model / heads, and `wo` kept in fp32 under half precision.
v1.0: ReLU MLP (`wi`, `wo`), LM head tied to `shared` with the decoder output scaled by d_model**-0.5.
v1.1 / flan-T5: `feed_forward_proj: "gated-gelu"` (tanh GELU on `wi_0` times `wi_1`), its own
`lm_head.weight` and no scaling.

Tying and scaling follow transformers 5.24 (`T5Config.__post_init__`, `modeling_t5.py`): the output
is scaled unless config.json says `tie_word_embeddings: false` (an explicit `scale_decoder_outputs`
wins), and the head is tied unless the checkpoint carries an `lm_head.weight` that differs from
`shared.weight` (transformers 5.24 writes `tie_word_embeddings: true` even for untied models).
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Dialect, Recipe, Rule, common_from_hf, common_to_hf, fused, read
from .bert import ACTIVATION_BACK, ACTIVATION_NAMES

EMBEDDINGS = "shared.weight|encoder.embed_tokens.weight|decoder.embed_tokens.weight"


def feed_forward(hf: dict[str, Any], where: str) -> tuple[str, bool]:
    """`feed_forward_proj` ("relu", "gated-gelu", "gated-silu", ...) -> (activation, gated)."""
    proj = read(hf, "feed_forward_proj", str, where, "relu")
    parts = proj.split("-")
    gated = parts[0] == "gated"
    if (len(parts) == 2 and not gated) or len(parts) > 2 or parts[-1] not in ACTIVATION_NAMES:
        raise ConfigError(f"{where}: feed_forward_proj {proj!r} is not supported; use 'ACT' or 'gated-ACT' "
                          f"with ACT one of {sorted(ACTIVATION_NAMES)}")
    if proj == "gated-gelu":  # transformers' backwards-compatible alias: the tanh approximation
        return "gelu_tanh", True
    return ACTIVATION_NAMES[parts[-1]], gated


def feed_forward_to_hf(config: ModelConfig) -> str:
    if not config.gated_mlp:
        return ACTIVATION_BACK[config.activation]
    if config.activation == "gelu":  # "gated-gelu" means tanh GELU to transformers; erf has no name
        raise ConfigError(f"config ({config.model_type}): a gated erf-GELU MLP cannot be written as T5 "
                          "feed_forward_proj; use activation='gelu_tanh'")
    return "gated-gelu" if config.activation == "gelu_tanh" else "gated-" + ACTIVATION_BACK[config.activation]


class T5Dialect(Dialect):
    model_type = "t5"
    family = "encoder-decoder"
    recipe = Recipe("span_corruption", "unigram", special_ids=(("decoder_start_token_id", "pad_token_id"),))
    base_prefix = ""
    architectures = {None: "T5Model", "lm": "T5ForConditionalGeneration"}
    # a tied copy of `shared` (only ignored once `config_for_weights` found it equal), and the relative
    # bias table old checkpoints carry in cross-attention, which T5 never uses
    ignore = (r"^lm_head\.weight$", r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$")

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        d_model = read(hf, "d_model", int, where, 512)
        activation, gated = feed_forward(hf, where)
        tied = read(hf, "tie_word_embeddings", bool, where, True)
        scaled = read(hf, "scale_decoder_outputs", bool, where, tied)
        common = common_from_hf(hf, where)
        common["pad_token_id"] = read(hf, "pad_token_id", int, where, 0)
        common["eos_token_id"] = read(hf, "eos_token_id", (int, list), where, 1)
        if common["decoder_start_token_id"] is None:  # T5 starts decoding from the pad token
            common["decoder_start_token_id"] = common["pad_token_id"]
        return ModelConfig(
            model_type=self.model_type,
            vocab_size=read(hf, "vocab_size", int, where, 32128),
            hidden_size=d_model,
            head_dim=read(hf, "d_kv", int, where, 64),
            intermediate_size=read(hf, "d_ff", int, where, 2048),
            num_layers=read(hf, "num_layers", int, where, 6),
            num_decoder_layers=read(hf, "num_decoder_layers", int, where, None),
            num_heads=read(hf, "num_heads", int, where, 8),
            positions="relative",
            relative_buckets=read(hf, "relative_attention_num_buckets", int, where, 32),
            relative_max_distance=read(hf, "relative_attention_max_distance", int, where, 128),
            norm="rms",
            norm_eps=read(hf, "layer_norm_epsilon", float, where, 1e-6),
            norm_placement="pre",
            final_norm=True,
            activation=activation,
            gated_mlp=gated,
            scale_attention=False,
            bias=False,
            tie_word_embeddings=tied,
            output_scale=d_model ** -0.5 if scaled else 1.0,
            mlp_down_fp32=True,
            dropout=read(hf, "dropout_rate", float, where, 0.1),
            attention_dropout=read(hf, "dropout_rate", float, where, 0.1),
            activation_dropout=read(hf, "dropout_rate", float, where, 0.1),
            classifier_dropout=read(hf, "classifier_dropout", float, where, 0.0),
            initializer_range=read(hf, "initializer_factor", float, where, 1.0),
            init_scheme="fan_in",
            **common,
        )

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        proj = feed_forward_to_hf(config)
        return dict(
            vocab_size=config.vocab_size, d_model=config.hidden_size, d_kv=config.attention_head_dim,
            d_ff=config.intermediate_size, num_layers=config.num_layers, num_decoder_layers=config.decoder_layers,
            num_heads=config.num_heads, relative_attention_num_buckets=config.relative_buckets,
            relative_attention_max_distance=config.relative_max_distance, layer_norm_epsilon=config.norm_eps,
            feed_forward_proj=proj, dense_act_fn="gelu_new" if proj == "gated-gelu" else proj.split("-")[-1],
            is_gated_act=config.gated_mlp, dropout_rate=config.dropout, initializer_factor=config.initializer_range,
            classifier_dropout=config.classifier_dropout,
            # transformers reads scaling from both keys and ties by the weights (see the docstring)
            tie_word_embeddings=config.tie_word_embeddings, scale_decoder_outputs=config.output_scale != 1.0,
            is_encoder_decoder=True, **common_to_hf(config),
        )

    def config_for_weights(self, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> ModelConfig:
        """An `lm_head.weight` unlike `shared.weight` makes the head untied, whatever config.json says."""
        head, shared = tensors.get("lm_head.weight"), tensors.get("shared.weight")
        if config.tie_word_embeddings and head is not None and (shared is None or not torch.equal(head, shared)):
            return config.replace(tie_word_embeddings=False)
        return config

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        if head not in self.architectures:
            raise ConfigError(f"T5 checkpoints support heads {sorted(map(str, self.architectures))}, not {head!r}")
        rules = [Rule("embed_tokens.weight", (EMBEDDINGS,))]
        for stack in ("encoder", "decoder"):  # layer 0 owns the bucket table of its whole stack
            rules += [Rule(f"{stack}.rel_bias.embed.weight",
                           (f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)),
                      Rule(f"{stack}.final_norm.weight", (f"{stack}.final_layer_norm.weight",))]
        mlp = ({"gate": "wi_0", "up": "wi_1", "down": "wo"} if config.gated_mlp else {"up": "wi", "down": "wo"})
        for stack in ("encoder", "decoder"):
            ours, layer = f"{stack}.layers.{{}}.", f"{stack}.block.{{}}.layer."
            ff = 2 if stack == "decoder" else 1  # index of the feed-forward sub-layer
            rules += [
                Rule(ours + "attn.qkv.weight", tuple(f"{layer}0.SelfAttention.{p}.weight" for p in "qkv"),
                     layers=stack, **fused(3)),
                Rule(ours + "attn.out.weight", (f"{layer}0.SelfAttention.o.weight",), layers=stack),
                Rule(ours + "attn_norm.weight", (f"{layer}0.layer_norm.weight",), layers=stack),
                Rule(ours + "mlp_norm.weight", (f"{layer}{ff}.layer_norm.weight",), layers=stack),
            ]
            rules += [Rule(f"{ours}mlp.{mine}.weight", (f"{layer}{ff}.DenseReluDense.{theirs}.weight",), layers=stack)
                      for mine, theirs in mlp.items()]
        ours, layer = "decoder.layers.{}.", "decoder.block.{}.layer.1."
        rules += [
            Rule(ours + "cross_attn.q.weight", (layer + "EncDecAttention.q.weight",), layers="decoder"),
            Rule(ours + "cross_attn.kv.weight", tuple(f"{layer}EncDecAttention.{p}.weight" for p in "kv"),
                 layers="decoder", **fused(2)),
            Rule(ours + "cross_attn.out.weight", (layer + "EncDecAttention.o.weight",), layers="decoder"),
            Rule(ours + "cross_norm.weight", (layer + "layer_norm.weight",), layers="decoder"),
        ]
        if head == "lm":
            rules.append(Rule("lm_head.weight", ("lm_head.weight",), head="lm"))
        return rules
