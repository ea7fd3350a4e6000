"""BERT and RoBERTa checkpoints (transformers' `BertModel`, `RobertaModel` and their task heads).

Post-norm encoder, learned absolute positions (RoBERTa's count non-pad tokens from pad+1), token
types, erf GELU, embedding LayerNorm, pooler; q, k and v are fused into one matrix on load.
Legacy `LayerNorm.gamma/beta` names are renamed before matching (see checkpoint.py).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import NULL, Dialect, Key, Recipe, Rule, fused
from .keys import activation, common_keys

# BertConfig / RobertaConfig keys that select a variant triformers does not build
DECODER_ONLY = " (BertLMHeadModel's causal decoder and cross-attention are not implemented)"


def encoder_keys(vocab_size: int, type_vocab_size: int, **ids: Any) -> tuple[Key, ...]:
    """BertConfig's keys (RobertaConfig has the same, with other defaults): transformers 5.24 configuration_bert.py."""
    return (
        Key("vocab_size", "vocab_size", int, vocab_size),
        Key("hidden_size", "hidden_size", int, 768),
        Key("num_hidden_layers", "num_layers", int, 12),
        Key("num_attention_heads", "num_heads", int, 12),
        Key("intermediate_size", "intermediate_size", int, 3072),
        Key("hidden_act", "activation", str, "gelu", **activation()),
        Key("hidden_dropout_prob", "dropout", float, 0.1),
        Key("attention_probs_dropout_prob", "attention_dropout", float, 0.1),
        Key("max_position_embeddings", "max_positions", int, 512),
        Key("type_vocab_size", "type_vocab_size", int, type_vocab_size),
        Key("initializer_range", "initializer_range", float, 0.02),
        Key("layer_norm_eps", "norm_eps", float, 1e-12),
        Key("classifier_dropout", "classifier_dropout", (float, NULL), None),  # None: hidden_dropout_prob
        Key("is_decoder", None, bool, False, only=(False,), why=DECODER_ONLY),
        Key("add_cross_attention", None, bool, False, only=(False,), why=DECODER_ONLY),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        *common_keys(**ids),
    )


class BertDialect(Dialect):
    model_type = "bert"
    family = "encoder"
    recipe = Recipe("mlm", "wordpiece")
    base_prefix = "bert."
    lora_targets = ("query", "value")
    architectures = {None: "BertModel", "mlm": "BertForMaskedLM",
                     "sequence_classification": "BertForSequenceClassification",
                     "token_classification": "BertForTokenClassification",
                     "question_answering": "BertForQuestionAnswering"}
    ignore = (r"position_ids$", r"^cls\.predictions\.decoder\.(weight|bias)$", r"^cls\.seq_relationship\.")
    keys = encoder_keys(30522, 2, pad=0)
    fixed = dict(norm_placement="post", embedding_norm=True, pooler=True, classifier="pooled",
                 classifier_token="first")

    # names of the heads in checkpoints
    mlm_names = {"mlm.dense.weight": "cls.predictions.transform.dense.weight",
                 "mlm.dense.bias": "cls.predictions.transform.dense.bias",
                 "mlm.norm.weight": "cls.predictions.transform.LayerNorm.weight",
                 "mlm.norm.bias": "cls.predictions.transform.LayerNorm.bias",
                 "mlm.bias": "cls.predictions.bias",
                 "mlm.decoder.weight": "cls.predictions.decoder.weight"}
    classifier_names = {"classifier.out.weight": "classifier.weight", "classifier.out.bias": "classifier.bias"}

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        layer = "encoder.layer.{}."
        ours = "encoder.layers.{}."
        body = [
            Rule("embed_tokens.weight", ("embeddings.word_embeddings.weight",)),
            Rule("encoder.positions.weight", ("embeddings.position_embeddings.weight",)),
            Rule("encoder.embed_norm.weight", ("embeddings.LayerNorm.weight",)),
            Rule("encoder.embed_norm.bias", ("embeddings.LayerNorm.bias",)),
        ]
        if config.type_vocab_size:
            body.append(Rule("encoder.token_types.weight", ("embeddings.token_type_embeddings.weight",)))
        for kind in ("weight", "bias"):
            body += [
                Rule(ours + f"attn.qkv.{kind}", tuple(layer + f"attention.self.{p}.{kind}"
                                                      for p in ("query", "key", "value")),
                     layers="encoder", **fused(3)),
                Rule(ours + f"attn.out.{kind}", (layer + f"attention.output.dense.{kind}",), layers="encoder"),
                Rule(ours + f"attn_norm.{kind}", (layer + f"attention.output.LayerNorm.{kind}",), layers="encoder"),
                Rule(ours + f"mlp.up.{kind}", (layer + f"intermediate.dense.{kind}",), layers="encoder"),
                Rule(ours + f"mlp.down.{kind}", (layer + f"output.dense.{kind}",), layers="encoder"),
                Rule(ours + f"mlp_norm.{kind}", (layer + f"output.LayerNorm.{kind}",), layers="encoder"),
                Rule(f"pooler.{kind}", (f"pooler.dense.{kind}",), head="pooler"),
            ]
        heads = {"mlm": self.mlm_names, "sequence_classification": self.classifier_names,
                 "token_classification": {"token_classifier.weight": "classifier.weight",
                                          "token_classifier.bias": "classifier.bias"},
                 "question_answering": {"token_classifier.weight": "qa_outputs.weight",
                                        "token_classifier.bias": "qa_outputs.bias"}}
        rules = [Rule(o, (t,), head=head) for o, t in heads.get(head, {}).items()]
        if head == "mlm" and not config.tie_word_embeddings:
            # Untied, transformers (v5) adds the decoder's own bias and leaves `*.bias` unused; v4 kept
            # the two equal. Read the decoder's bias when present and write both, so either loads it.
            bias = self.mlm_names["mlm.bias"]
            decoder_bias = self.mlm_names["mlm.decoder.weight"].removesuffix("weight") + "bias"
            rules = [r for r in rules if r.ours != "mlm.bias"] + [
                Rule("mlm.bias", (f"{decoder_bias}|{bias}", f"{bias}|{decoder_bias}"), head=head,
                     load=lambda tensors, config: tensors[0], save=lambda tensor, config: (tensor, tensor))]
        return body + rules


class RobertaDialect(BertDialect):
    model_type = "roberta"
    recipe = Recipe("mlm", "roberta", config=(("type_vocab_size", 1),))  # as roberta-base (RobertaConfig says 2)
    base_prefix = "roberta."
    architectures = {None: "RobertaModel", "mlm": "RobertaForMaskedLM",
                     "sequence_classification": "RobertaForSequenceClassification",
                     "token_classification": "RobertaForTokenClassification",
                     "question_answering": "RobertaForQuestionAnswering"}
    ignore = (r"position_ids$", r"^lm_head\.decoder\.(weight|bias)$")
    keys = encoder_keys(50265, 2, pad=1, bos=0, eos=2)
    # positions count non-pad tokens from pad + 1; `RobertaLMHead` applies erf GELU whatever hidden_act says
    fixed = dict(BertDialect.fixed, positions_from_padding=True, classifier="dense_tanh", mlm_activation="gelu")
    mlm_names = {"mlm.dense.weight": "lm_head.dense.weight", "mlm.dense.bias": "lm_head.dense.bias",
                 "mlm.norm.weight": "lm_head.layer_norm.weight", "mlm.norm.bias": "lm_head.layer_norm.bias",
                 "mlm.bias": "lm_head.bias", "mlm.decoder.weight": "lm_head.decoder.weight"}
    classifier_names = {"classifier.dense.weight": "classifier.dense.weight",
                        "classifier.dense.bias": "classifier.dense.bias",
                        "classifier.out.weight": "classifier.out_proj.weight",
                        "classifier.out.bias": "classifier.out_proj.bias"}

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        config = super().config_from_hf(hf, where)
        if config.pad_token_id is None:
            raise ConfigError(f"{where}: RoBERTa needs pad_token_id (positions are counted from it)")
        return config
