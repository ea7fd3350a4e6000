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
The MLP is what `feed_forward_proj` says unless config.json has `dense_act_fn` / `is_gated_act`, which
T5Config derives from it but lets an explicit key override, as here.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ConfigError
from .base import NULL, Dialect, Key, Recipe, Rule, fused
from .keys import ACTIVATION_BACK, ACTIVATION_NAMES, activation, common_keys

EMBEDDINGS = "shared.weight|encoder.embed_tokens.weight|decoder.embed_tokens.weight"


def feed_forward(proj: str, read: dict[str, Any]) -> tuple[str, bool]:
    """`feed_forward_proj` ("relu", "gated-gelu", "gated-silu", ...) -> (activation, gated)."""
    parts = proj.split("-")
    gated = parts[0] == "gated"
    if (len(parts) == 2 and not gated) or len(parts) > 2 or parts[-1] not in ACTIVATION_NAMES:
        raise ValueError(f"{proj!r} is not supported; use 'ACT' or 'gated-ACT' with ACT one of "
                         f"{sorted(ACTIVATION_NAMES)}")
    if proj == "gated-gelu":  # transformers' backwards-compatible alias: the tanh approximation
        return "gelu_tanh", True
    return ACTIVATION_NAMES[parts[-1]], gated


def feed_forward_to_hf(config: ModelConfig) -> str:
    """The inverse; a gated erf GELU has no name of its own: "gated-gelu" with `dense_act_fn: gelu` says it."""
    if not config.gated_mlp:
        return ACTIVATION_BACK[config.activation]
    return "gated-gelu" if config.activation.startswith("gelu") else "gated-" + ACTIVATION_BACK[config.activation]


def dense_act_fn(read: dict[str, Any]) -> str:
    """T5Config's `dense_act_fn` when config.json has none: from feed_forward_proj."""
    proj = read["feed_forward_proj"]
    return "gelu_new" if proj == "gated-gelu" else proj.split("-")[-1]


class T5Dialect(Dialect):
    model_type = "t5"
    family = "encoder-decoder"
    recipe = Recipe("span_corruption", "unigram", special_ids=(("decoder_start_token_id", "pad_token_id"),))
    base_prefix = ""
    lora_targets = ("q", "v")
    architectures = {None: "T5Model", "lm": "T5ForConditionalGeneration"}
    # a tied copy of `shared` (only ignored once `config_for_weights` found it equal), and the relative
    # bias table old checkpoints carry in cross-attention, which T5 never uses
    ignore = (r"^lm_head\.weight$", r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$")

    # T5Config (transformers 5.24 configuration_t5.py); second names: its attribute_map, read from config.json too
    keys = (
        Key("vocab_size", "vocab_size", int, 32128),
        Key("d_model|hidden_size", "hidden_size", int, 512),
        Key("d_kv|head_dim", "head_dim", int, 64),
        Key("d_ff", "intermediate_size", int, 2048),
        Key("num_layers|num_hidden_layers", "num_layers", int, 6),
        Key("num_decoder_layers", "num_decoder_layers", (int, NULL), None,
            load=lambda value, read: read["num_layers"] if value is None else value),
        Key("num_heads|num_attention_heads", "num_heads", int, 8),
        Key("relative_attention_num_buckets", "relative_buckets", int, 32),
        Key("relative_attention_max_distance", "relative_max_distance", int, 128),
        # T5 drops at every one of these places with the one rate
        Key("dropout_rate", ("dropout", "attention_dropout", "activation_dropout"), float, 0.1,
            load=lambda value, read: (value, value, value), save=lambda c: c.dropout),
        Key("layer_norm_epsilon", "norm_eps", float, 1e-6),
        Key("initializer_factor", "initializer_range", float, 1.0),
        Key("feed_forward_proj", ("activation", "gated_mlp"), str, "relu", load=feed_forward, save=feed_forward_to_hf),
        Key("dense_act_fn", "activation", str, dense_act_fn, **activation()),
        Key("is_gated_act", "gated_mlp", bool, lambda read: read["feed_forward_proj"].startswith("gated-")),
        Key("is_encoder_decoder", None, bool, True, only=(True,)),
        Key("classifier_dropout", "classifier_dropout", float, 0.0),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        Key("scale_decoder_outputs", "output_scale", bool, lambda read: read["tie_word_embeddings"],
            load=lambda value, read: read["d_model"] ** -0.5 if value else 1.0, save=lambda c: c.output_scale != 1.0),
        # T5 starts decoding from the pad token; always written: transformers' T5 cannot shift labels without it
        *common_keys(pad=0, eos=1, decoder_start=lambda read: read["pad_token_id"],
                     fields=("pad_token_id", "eos_token_id", "decoder_start_token_id")),
    )
    fixed = dict(positions="relative", norm="rms", norm_placement="pre", final_norm=True, final_norm_dropout=True,
                 scale_attention=False, bias=False, mlp_down_fp32=True, init_scheme="fan_in")

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
        mlp = {"down": "wo"} if config.gated_mlp else {"up": "wi", "down": "wo"}
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
            if config.gated_mlp:  # gate | up fused into one matrix (layers/mlp.py)
                rules.append(Rule(f"{ours}mlp.gate_up.weight", tuple(f"{layer}{ff}.DenseReluDense.wi_{i}.weight"
                                                                     for i in (0, 1)), layers=stack, **fused(2)))
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
