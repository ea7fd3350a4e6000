"""OPT checkpoints (transformers' `OPTModel`, `OPTForCausalLM`, `OPTForSequenceClassification`,
`OPTForQuestionAnswering`).

Matches `modeling_opt.py`: learned positions counted over the tokens the attention mask keeps, read from a
table with two extra rows in front (`OPTLearnedPositionalEmbedding`: position p at row p + 2, pads at row
1), ReLU MLP, biases (`enable_bias`), pre-norm (`do_layer_norm_before`) or post-norm (opt-350m, which then
has no final norm), and when `word_embed_proj_dim` differs from the hidden size (opt-350m: 512 vs 1024)
token embeddings of that width, projected in (`project_in`) before the positions are added and back out
(`project_out`) before the LM head, which is tied to them. q is scaled before its product with k in OPT,
after it in SDPA: the same function.
"""

from __future__ import annotations

from ..config import ModelConfig
from .base import Dialect, Key, Recipe, Rule, fused
from .keys import activation, common_keys

LAYERDROP = " (LayerDrop, skipping layers at random in training, is not implemented; inference is unaffected)"


class OPTDialect(Dialect):
    model_type = "opt"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "model."
    architectures = {None: "OPTModel", "lm": "OPTForCausalLM",
                     "sequence_classification": "OPTForSequenceClassification",
                     "question_answering": "OPTForQuestionAnswering"}
    ignore = (r"^lm_head\.weight$",)
    # OPTConfig (transformers 5.24 configuration_opt.py)
    keys = (
        Key("vocab_size", "vocab_size", int, 50272),
        Key("hidden_size", "hidden_size", int, 768),
        Key("num_hidden_layers", "num_layers", int, 12),
        Key("ffn_dim", "intermediate_size", int, 3072),
        Key("max_position_embeddings", "max_positions", int, 2048),
        Key("_remove_final_layer_norm", None, bool, False,
            save=lambda c: c.norm_placement == "pre" and not c.final_norm),
        Key("do_layer_norm_before", ("norm_placement", "final_norm"), bool, True,
            load=lambda value, read: ("pre" if value else "post", value and not read["_remove_final_layer_norm"]),
            save=lambda c: c.norm_placement == "pre"),
        Key("word_embed_proj_dim", "embedding_size", (int, type(None)), None,
            load=lambda value, read: None if value is None or value == read["hidden_size"] else value,
            save=lambda c: c.embedding_width),
        Key("dropout", "dropout", float, 0.1),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("num_attention_heads", "num_heads", int, 12),
        Key("activation_function", "activation", str, "relu", **activation()),
        Key("layerdrop", None, float, 0.0, only=(0.0,), why=LAYERDROP),
        Key("init_std", "initializer_range", float, 0.02),
        Key("enable_bias", ("qkv_bias", "out_bias", "mlp_bias"), bool, True,
            load=lambda value, read: (value, value, value), save=lambda c: c.layer_bias("qkv")),
        Key("layer_norm_elementwise_affine", None, bool, True, only=(True,),
            why=" (LayerNorms without weights are not implemented)"),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        *common_keys(pad=1, bos=2, eos=2),
    )
    # OPT adds no dropout to the embeddings; its LayerNorms keep the torch default eps
    fixed = dict(positions="learned", position_offset=2, positions_from_mask=True, norm_eps=1e-5,
                 embedding_dropout=0.0, classifier="linear", classifier_token="last")

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        ours, layer = "decoder.layers.{}.", "decoder.layers.{}."
        rules = [Rule("embed_tokens.weight", ("decoder.embed_tokens.weight",)),
                 Rule("decoder.positions.weight", ("decoder.embed_positions.weight",))]
        if config.embedding_width != config.hidden_size:
            rules += [Rule(f"decoder.{p}.weight", (f"decoder.{p}.weight",)) for p in ("project_in", "project_out")]
        for kind in ("weight", "bias"):
            if config.final_norm:
                rules.append(Rule(f"decoder.final_norm.{kind}", (f"decoder.final_layer_norm.{kind}",)))
            rules += [Rule(f"{ours}attn_norm.{kind}", (f"{layer}self_attn_layer_norm.{kind}",), layers="decoder"),
                      Rule(f"{ours}mlp_norm.{kind}", (f"{layer}final_layer_norm.{kind}",), layers="decoder")]
            if kind == "bias" and not config.layer_bias("qkv"):
                continue
            rules += [Rule(f"{ours}attn.qkv.{kind}", tuple(f"{layer}self_attn.{p}_proj.{kind}" for p in "qkv"),
                           layers="decoder", **fused(3)),
                      Rule(f"{ours}attn.out.{kind}", (f"{layer}self_attn.out_proj.{kind}",), layers="decoder"),
                      Rule(f"{ours}mlp.up.{kind}", (f"{layer}fc1.{kind}",), layers="decoder"),
                      Rule(f"{ours}mlp.down.{kind}", (f"{layer}fc2.{kind}",), layers="decoder")]
        if head == "lm":
            rules.append(Rule("lm_head.weight", ("lm_head.weight",), head="lm"))
        elif head == "sequence_classification":
            rules.append(Rule("classifier.out.weight", ("score.weight",), head=head))
        elif head == "question_answering":
            rules += [Rule(f"token_classifier.{kind}", (f"qa_outputs.{kind}",), head=head)
                      for kind in ("weight", "bias")]
        return rules
