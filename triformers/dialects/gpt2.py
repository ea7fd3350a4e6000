"""GPT-2 checkpoints (transformers' `GPT2Model`, `GPT2LMHeadModel`, `GPT2ForSequenceClassification`).

Pre-norm causal decoder, learned positions, tanh GELU, tied LM head. GPT-2 stores its linear layers
as Conv1D, weights (in, out): they are transposed here, in one visible place, and q|k|v stay fused
along the output dimension exactly as GPT-2 fuses them. `attn.bias` / `attn.masked_bias` are
causal-mask buffers, not weights, and are dropped.
"""

from __future__ import annotations

from ..config import ModelConfig
from .base import NULL, Dialect, Key, Recipe, Rule, transposed
from .keys import activation, common_keys

UNSUPPORTED = " (not implemented by triformers)"


class GPT2Dialect(Dialect):
    model_type = "gpt2"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "transformer."
    lora_targets = ("c_attn",)
    architectures = {None: "GPT2Model", "lm": "GPT2LMHeadModel",
                     "sequence_classification": "GPT2ForSequenceClassification"}
    ignore = (r"attn\.bias$", r"attn\.masked_bias$", r"^lm_head\.weight$")
    # GPT2Config (transformers 5.24 configuration_gpt2.py); summary_* (GPT2DoubleHeadsModel) stay in `extra`
    keys = (
        Key("vocab_size", "vocab_size", int, 50257),
        # second names: GPT2Config's attribute_map, which transformers also reads from config.json
        Key("n_positions|max_position_embeddings", "max_positions", int, 1024),
        Key("n_embd|hidden_size", "hidden_size", int, 768),
        Key("n_layer|num_hidden_layers", "num_layers", int, 12),
        Key("n_head|num_attention_heads", "num_heads", int, 12),
        # null: 4 * n_embd; a width of exactly 4 * n_embd is written as null (GPT2MLP reads it so)
        Key("n_inner", "intermediate_size", (int, NULL), None,
            load=lambda value, read: 4 * read["n_embd"] if value is None else value,
            save=lambda c: None if c.intermediate_size == 4 * c.hidden_size else c.intermediate_size),
        Key("activation_function", "activation", str, "gelu_new", **activation()),
        Key("resid_pdrop", "dropout", float, 0.1),
        # GPT2Model.drop; None while it equals resid_pdrop, so that changing `dropout` changes both
        Key("embd_pdrop", "embedding_dropout", float, 0.1,
            load=lambda value, read: None if value == read["resid_pdrop"] else value,
            save=lambda c: c.dropout if c.embedding_dropout is None else c.embedding_dropout),
        Key("attn_pdrop", "attention_dropout", float, 0.1),
        Key("layer_norm_epsilon", "norm_eps", float, 1e-5),
        Key("initializer_range", "initializer_range", float, 0.02),
        Key("scale_attn_weights", "scale_attention", bool, True),
        Key("scale_attn_by_inverse_layer_idx", None, bool, False, only=(False,), why=UNSUPPORTED),
        Key("reorder_and_upcast_attn", None, bool, False, only=(False,), why=UNSUPPORTED),
        Key("add_cross_attention", None, bool, False, only=(False,), why=UNSUPPORTED),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        *common_keys(bos=50256, eos=50256),
    )
    fixed = dict(norm_placement="pre", final_norm=True, classifier="linear", classifier_token="last")

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
