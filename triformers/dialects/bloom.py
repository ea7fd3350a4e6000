"""BLOOM checkpoints (transformers' `BloomModel`, `BloomForCausalLM`, `BloomForSequenceClassification`).

Matches `transformers/models/bloom/modeling_bloom.py`: a pre-norm causal decoder with a LayerNorm right
after the word embeddings (`word_embeddings_layernorm`), no learned positions but ALiBi (Press et al.
2022; `build_alibi_tensor`, positions counted from the first non-pad token, see layers/positions.py),
tanh GELU, an MLP of 4 * hidden, a final `ln_f` and an LM head tied to the embeddings.

BLOOM's attention computes `alibi + q.k / sqrt(d)` (`baddbmm` with beta=1, alpha=1/sqrt(d)) and adds the
causal/padding mask; that is SDPA with the ALiBi bias folded into `attn_mask`, which our Stack builds.

The one layout difference: `query_key_value` fuses q, k, v interleaved per head, rows ordered
(heads, 3, head_dim); our `attn.qkv` stacks all q rows, then all k rows, then all v rows, i.e.
(3, heads, head_dim). The Rule's load/save transforms permute weights and biases between the two.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Dialect, Recipe, Rule, common_from_hf, common_to_hf, read


def _qkv_to_ours(tensors: tuple[torch.Tensor, ...], config: ModelConfig) -> torch.Tensor:
    """(heads*3*hd, ...) per-head interleaved -> (3*heads*hd, ...) q|k|v blocks (weight or bias)."""
    fused = tensors[0]
    rest = fused.shape[1:]  # (H,) for the weight, () for the bias
    heads, hd = config.num_heads, config.attention_head_dim
    if fused.shape[0] != 3 * heads * hd:
        # let the loader's shape check name the file: hand back a tensor of the checkpoint's own size
        return fused
    return fused.view(heads, 3, hd, *rest).transpose(0, 1).reshape(3 * heads * hd, *rest)


def _qkv_to_theirs(tensor: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor]:
    """Inverse of `_qkv_to_ours`: (3, heads, hd, ...) -> (heads, 3, hd, ...) rows."""
    rest = tensor.shape[1:]
    heads, hd = config.num_heads, config.attention_head_dim
    return (tensor.view(3, heads, hd, *rest).transpose(0, 1).reshape(3 * heads * hd, *rest),)


class BloomDialect(Dialect):
    model_type = "bloom"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "transformer."
    architectures = {None: "BloomModel", "lm": "BloomForCausalLM",
                     "sequence_classification": "BloomForSequenceClassification"}
    # transformers v5 omits the tied lm_head on save; older checkpoints carry it as a copy of the embeddings
    ignore = (r"^lm_head\.weight$",)

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        if read(hf, "apply_residual_connection_post_layernorm", bool, where, False):
            raise ConfigError(f"{where}: BLOOM option apply_residual_connection_post_layernorm=true is not "
                              "supported (the residual would start from the normed input)")
        # older BLOOM configs name the width `n_embed` (BloomConfig.__post_init__ lets it win)
        hidden = read(hf, "n_embed", int, where, None) or read(hf, "hidden_size", int, where, 64)
        # pretraining_tp / slow_but_exact only split the output matmuls into slices summed one by one:
        # the same function up to float rounding, so they are kept in `extra` and written back unchanged.
        return ModelConfig(
            model_type=self.model_type,
            vocab_size=read(hf, "vocab_size", int, where, 250880),
            hidden_size=hidden,
            num_layers=read(hf, "n_layer", int, where, 2),
            num_heads=read(hf, "n_head", int, where, 8),
            intermediate_size=4 * hidden,  # BloomMLP is always 4 * hidden (config's n_inner is unused)
            max_positions=0,
            positions="alibi",
            norm_eps=read(hf, "layer_norm_epsilon", float, where, 1e-5),
            norm_placement="pre",
            embedding_norm=True,
            final_norm=True,
            activation="gelu_tanh",
            dropout=read(hf, "hidden_dropout", float, where, 0.0),
            attention_dropout=read(hf, "attention_dropout", float, where, 0.0),
            classifier="linear",
            classifier_token="last",
            initializer_range=read(hf, "initializer_range", float, where, 0.02),
            tie_word_embeddings=read(hf, "tie_word_embeddings", bool, where, True),
            **{**common_from_hf(hf, where), "bos_token_id": read(hf, "bos_token_id", int, where, 1),
               "eos_token_id": read(hf, "eos_token_id", (int, list), where, 2)},
        )

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        return dict(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, n_layer=config.num_layers,
            n_head=config.num_heads, layer_norm_epsilon=config.norm_eps,
            apply_residual_connection_post_layernorm=False, hidden_dropout=config.dropout,
            attention_dropout=config.attention_dropout, initializer_range=config.initializer_range,
            tie_word_embeddings=config.tie_word_embeddings, **common_to_hf(config),
        )

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        h, ours = "h.{}.", "decoder.layers.{}."
        rules = [Rule("embed_tokens.weight", ("word_embeddings.weight",))]
        for kind in ("weight", "bias"):
            rules.append(Rule(f"decoder.embed_norm.{kind}", (f"word_embeddings_layernorm.{kind}",)))
            rules.append(Rule(f"decoder.final_norm.{kind}", (f"ln_f.{kind}",)))
            rules.append(Rule(f"{ours}attn.qkv.{kind}", (f"{h}self_attention.query_key_value.{kind}",),
                              layers="decoder", load=_qkv_to_ours, save=_qkv_to_theirs))
        names = {"attn.out": "self_attention.dense", "mlp.up": "mlp.dense_h_to_4h",
                 "mlp.down": "mlp.dense_4h_to_h", "attn_norm": "input_layernorm",
                 "mlp_norm": "post_attention_layernorm"}
        for mine, theirs in names.items():
            for kind in ("weight", "bias"):
                rules.append(Rule(f"{ours}{mine}.{kind}", (f"{h}{theirs}.{kind}",), layers="decoder"))
        if head == "lm":
            rules.append(Rule("lm_head.weight", ("lm_head.weight",), head="lm"))
        if head == "sequence_classification":
            rules.append(Rule("classifier.out.weight", ("score.weight",), head=head))
        return rules
