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

from ..config import ModelConfig
from .base import Dialect, Key, Recipe, Rule, interleaved_heads
from .keys import common_keys


class BloomDialect(Dialect):
    model_type = "bloom"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "transformer."
    lora_targets = ("query_key_value",)
    architectures = {None: "BloomModel", "lm": "BloomForCausalLM",
                     "sequence_classification": "BloomForSequenceClassification"}
    # transformers v5 omits the tied lm_head on save; older checkpoints carry it as a copy of the embeddings
    ignore = (r"^lm_head\.weight$",)

    # BloomConfig (transformers 5.24 configuration_bloom.py)
    keys = (
        Key("vocab_size", "vocab_size", int, 250880),
        # older configs name the width `n_embed`; BloomMLP is always 4 * hidden (no n_inner)
        Key("hidden_size|n_embed", ("hidden_size", "intermediate_size"), int, 64,
            load=lambda value, read: (value, 4 * value), save=lambda c: c.hidden_size),
        Key("n_layer|num_hidden_layers", "num_layers", int, 2),  # second names: BloomConfig's attribute_map
        Key("n_head|num_attention_heads", "num_heads", int, 8),
        Key("layer_norm_epsilon", "norm_eps", float, 1e-5),
        Key("initializer_range", "initializer_range", float, 0.02),
        Key("apply_residual_connection_post_layernorm", None, bool, False, only=(False,),
            why=" (the residual would start from the normed input)"),
        Key("hidden_dropout", "dropout", float, 0.0),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        # Megatron's tensor-parallel degree: read by transformers only on the slow path below
        Key("pretraining_tp", None, int, 1),
        Key("slow_but_exact", None, bool, False, only=lambda value, read: not value or read["pretraining_tp"] == 1,
            why=" with pretraining_tp > 1: transformers 5.24 then sums the output projections of attention and MLP "
                "in slices and leaves out their biases (BloomAttention / BloomMLP); triformers adds them"),
        *common_keys(bos=1, eos=2),
    )
    # no dropout on the embeddings (BloomModel has none), no learned positions but ALiBi
    fixed = dict(max_positions=0, positions="alibi", norm_placement="pre", embedding_norm=True, final_norm=True,
                 activation="gelu_tanh", embedding_dropout=0.0, classifier="linear", classifier_token="last")

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        h, ours = "h.{}.", "decoder.layers.{}."
        rules = [Rule("embed_tokens.weight", ("word_embeddings.weight",))]
        for kind in ("weight", "bias"):
            rules.append(Rule(f"decoder.embed_norm.{kind}", (f"word_embeddings_layernorm.{kind}",)))
            rules.append(Rule(f"decoder.final_norm.{kind}", (f"ln_f.{kind}",)))
            rules.append(Rule(f"{ours}attn.qkv.{kind}", (f"{h}self_attention.query_key_value.{kind}",),
                              layers="decoder", **interleaved_heads()))
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
