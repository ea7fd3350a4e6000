"""GPT-NeoX checkpoints (Pythia: transformers' `GPTNeoXModel`, `GPTNeoXForCausalLM` and its sequence / token
classification and QA heads).

Matches `modeling_gpt_neox.py`: a pre-norm decoder with LayerNorms, whose attention and MLP both read the
block input and add to it together (`use_parallel_residual`, else one after the other), rotary positions on
the first `rotary_pct` of each head (0.25 in Pythia), GELU MLP with biases, biases on attention
(`attention_bias`), an untied LM head `embed_out` (transformers 5.24 names it `lm_head` in memory and
writes `embed_out`). `query_key_value` fuses q, k, v per head, rows (heads, 3, head_dim) as BLOOM's; the
causal-mask and rotary buffers older checkpoints carry are dropped.
"""

from __future__ import annotations

from ..config import ModelConfig
from .base import Dialect, Key, Recipe, Rule, interleaved_heads
from .decoder_keys import rope_keys
from .keys import activation, common_keys


class GPTNeoXDialect(Dialect):
    model_type = "gpt_neox"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "gpt_neox."
    architectures = {None: "GPTNeoXModel", "lm": "GPTNeoXForCausalLM",
                     "sequence_classification": "GPTNeoXForSequenceClassification",
                     "token_classification": "GPTNeoXForTokenClassification",
                     "question_answering": "GPTNeoXForQuestionAnswering"}
    ignore = (r"attention\.(bias|masked_bias)$", r"rotary_emb\.inv_freq$")
    # GPTNeoXConfig (transformers 5.24 configuration_gpt_neox.py)
    keys = (
        Key("vocab_size", "vocab_size", int, 50432),
        Key("hidden_size", "hidden_size", int, 6144),
        Key("num_hidden_layers", "num_layers", int, 44),
        Key("num_attention_heads", "num_heads", int, 64),
        Key("intermediate_size", "intermediate_size", int, 24576),
        Key("hidden_act", "activation", str, "gelu", **activation()),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("hidden_dropout", "dropout", float, 0.0),
        Key("classifier_dropout", "classifier_dropout", float, 0.1),
        Key("max_position_embeddings", "max_positions", int, 2048),
        Key("initializer_range", "initializer_range", float, 0.02),
        Key("layer_norm_eps", "norm_eps", float, 1e-5),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        Key("use_parallel_residual", "parallel_residual", bool, True),
        Key("attention_bias", ("qkv_bias", "out_bias"), bool, True, load=lambda value, read: (value, value),
            save=lambda c: c.layer_bias("qkv")),
        *rope_keys(theta_key="rotary_emb_base", fraction_key="rotary_pct", fraction=0.25, fraction_in_parameters=True),
        *common_keys(bos=0, eos=2),
    )
    fixed = dict(positions="rotary", norm_placement="pre", final_norm=True, classifier="linear",
                 classifier_token="last")

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        ours, layer = "decoder.layers.{}.", "layers.{}."
        rules = [Rule("embed_tokens.weight", ("embed_in.weight",))]
        names = {"attn.out": "attention.dense", "mlp.up": "mlp.dense_h_to_4h", "mlp.down": "mlp.dense_4h_to_h",
                 "attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
        for kind in ("weight", "bias"):
            rules.append(Rule(f"decoder.final_norm.{kind}", (f"final_layer_norm.{kind}",)))
            if kind == "weight" or config.layer_bias("qkv"):
                rules.append(Rule(f"{ours}attn.qkv.{kind}", (f"{layer}attention.query_key_value.{kind}",),
                                  layers="decoder", **interleaved_heads()))
            rules += [Rule(f"{ours}{mine}.{kind}", (f"{layer}{theirs}.{kind}",), layers="decoder")
                      for mine, theirs in names.items() if kind == "weight" or mine != "attn.out"
                      or config.layer_bias("out")]
        if head == "lm":
            rules.append(Rule("lm_head.weight", ("embed_out.weight|lm_head.weight",), head="lm"))
        elif head == "sequence_classification":
            rules.append(Rule("classifier.out.weight", ("score.weight",), head=head))
        elif head in ("token_classification", "question_answering"):
            name = "classifier" if head == "token_classification" else "qa_outputs"
            rules += [Rule(f"token_classifier.{kind}", (f"{name}.{kind}",), head=head) for kind in ("weight", "bias")]
        return rules
