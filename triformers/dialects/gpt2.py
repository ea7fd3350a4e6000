"""GPT-2 checkpoints (transformers' `GPT2Model`, `GPT2LMHeadModel`, `GPT2ForSequenceClassification`).

Pre-norm causal decoder, learned positions, tanh GELU, tied LM head. GPT-2 stores its linear layers
as Conv1D, weights (in, out): they are transposed here, in one visible place, and q|k|v stay fused
along the output dimension exactly as GPT-2 fuses them. `attn.bias` / `attn.masked_bias` are
causal-mask buffers, not weights, and are dropped.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Dialect, Recipe, Rule, common_from_hf, common_to_hf, read, transposed
from .bert import ACTIVATION_BACK, activation


class GPT2Dialect(Dialect):
    model_type = "gpt2"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "transformer."
    architectures = {None: "GPT2Model", "lm": "GPT2LMHeadModel",
                     "sequence_classification": "GPT2ForSequenceClassification"}
    ignore = (r"attn\.bias$", r"attn\.masked_bias$", r"^lm_head\.weight$")

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
            if hf.get(flag):
                raise ConfigError(f"{where}: GPT-2 option {flag}=true is not supported")
        hidden = read(hf, "n_embd", int, where, 768)
        return ModelConfig(
            model_type=self.model_type,
            vocab_size=read(hf, "vocab_size", int, where, 50257),
            hidden_size=hidden,
            num_layers=read(hf, "n_layer", int, where, 12),
            num_heads=read(hf, "n_head", int, where, 12),
            intermediate_size=read(hf, "n_inner", int, where, None) or 4 * hidden,
            max_positions=read(hf, "n_positions", int, where, 1024),
            norm_eps=read(hf, "layer_norm_epsilon", float, where, 1e-5),
            norm_placement="pre",
            final_norm=True,
            activation=activation(hf, "activation_function", where, "gelu_new"),
            scale_attention=read(hf, "scale_attn_weights", bool, where, True),
            dropout=read(hf, "resid_pdrop", float, where, 0.1),
            attention_dropout=read(hf, "attn_pdrop", float, where, 0.1),
            classifier="linear",
            classifier_token="last",
            initializer_range=read(hf, "initializer_range", float, where, 0.02),
            tie_word_embeddings=read(hf, "tie_word_embeddings", bool, where, True),
            **{**common_from_hf(hf, where), "bos_token_id": read(hf, "bos_token_id", int, where, 50256),
               "eos_token_id": read(hf, "eos_token_id", (int, list), where, 50256)},
        )

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        return dict(
            vocab_size=config.vocab_size, n_embd=config.hidden_size, n_layer=config.num_layers,
            n_head=config.num_heads, n_inner=config.intermediate_size, n_positions=config.max_positions,
            layer_norm_epsilon=config.norm_eps, activation_function=ACTIVATION_BACK[config.activation],
            scale_attn_weights=config.scale_attention, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.attention_dropout, initializer_range=config.initializer_range,
            tie_word_embeddings=config.tie_word_embeddings, **common_to_hf(config),
        )

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        h, ours = "h.{}.", "decoder.layers.{}."
        rules = [
            Rule("embed_tokens.weight", ("wte.weight",)),
            Rule("decoder.positions.weight", ("wpe.weight",)),
            Rule("decoder.final_norm.weight", ("ln_f.weight",)),
            Rule("decoder.final_norm.bias", ("ln_f.bias",)),
        ]
        conv1d = {"attn.qkv": "attn.c_attn", "attn.out": "attn.c_proj", "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"}
        norms = {"attn_norm": "ln_1", "mlp_norm": "ln_2"}
        for mine, theirs in conv1d.items():
            rules.append(Rule(ours + mine + ".weight", (h + theirs + ".weight",), layers="decoder", **transposed()))
            rules.append(Rule(ours + mine + ".bias", (h + theirs + ".bias",), layers="decoder"))
        for mine, theirs in norms.items():
            for kind in ("weight", "bias"):
                rules.append(Rule(f"{ours}{mine}.{kind}", (f"{h}{theirs}.{kind}",), layers="decoder"))
        if head == "lm":
            rules.append(Rule("lm_head.weight", ("lm_head.weight",), head="lm"))
        if head == "sequence_classification":
            rules.append(Rule("classifier.out.weight", ("score.weight",), head=head))
        return rules
