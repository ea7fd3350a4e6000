"""BERT and RoBERTa checkpoints (transformers' `BertModel`, `RobertaModel` and their task heads).

Post-norm encoder, learned absolute positions (RoBERTa's count non-pad tokens from pad+1), token
types, erf GELU, embedding LayerNorm, pooler; q, k and v are fused into one matrix on load.
Legacy `LayerNorm.gamma/beta` names are renamed before matching (see checkpoint.py).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Dialect, Recipe, Rule, common_from_hf, common_to_hf, fused, read

ACTIVATION_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                    "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATION_BACK = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation(hf: dict[str, Any], key: str, where: str, default: str) -> str:
    name = read(hf, key, str, where, default)
    if name not in ACTIVATION_NAMES:
        raise ConfigError(f"{where}: {key} {name!r} is not supported; use one of {sorted(ACTIVATION_NAMES)}")
    return ACTIVATION_NAMES[name]


class BertDialect(Dialect):
    model_type = "bert"
    family = "encoder"
    recipe = Recipe("mlm", "wordpiece")
    base_prefix = "bert."
    architectures = {None: "BertModel", "mlm": "BertForMaskedLM",
                     "sequence_classification": "BertForSequenceClassification",
                     "token_classification": "BertForTokenClassification",
                     "question_answering": "BertForQuestionAnswering"}
    ignore = (r"position_ids$", r"^cls\.predictions\.decoder\.(weight|bias)$", r"^cls\.seq_relationship\.")
    positions_from_padding = False
    classifier = "pooled"
    defaults = dict(vocab_size=30522, pad_token_id=0, type_vocab_size=2)

    def config_from_hf(self, hf: dict[str, Any], where: str) -> ModelConfig:
        d = self.defaults
        return ModelConfig(
            model_type=self.model_type,
            vocab_size=read(hf, "vocab_size", int, where, d["vocab_size"]),
            hidden_size=read(hf, "hidden_size", int, where, 768),
            num_layers=read(hf, "num_hidden_layers", int, where, 12),
            num_heads=read(hf, "num_attention_heads", int, where, 12),
            intermediate_size=read(hf, "intermediate_size", int, where, 3072),
            max_positions=read(hf, "max_position_embeddings", int, where, 512),
            positions_from_padding=self.positions_from_padding,
            type_vocab_size=read(hf, "type_vocab_size", int, where, d["type_vocab_size"]),
            norm_eps=read(hf, "layer_norm_eps", float, where, 1e-12),
            norm_placement="post",
            embedding_norm=True,
            activation=activation(hf, "hidden_act", where, "gelu"),
            pooler=True,
            classifier=self.classifier,
            classifier_token="first",
            dropout=read(hf, "hidden_dropout_prob", float, where, 0.1),
            attention_dropout=read(hf, "attention_probs_dropout_prob", float, where, 0.1),
            classifier_dropout=read(hf, "classifier_dropout", float, where, None),
            initializer_range=read(hf, "initializer_range", float, where, 0.02),
            tie_word_embeddings=read(hf, "tie_word_embeddings", bool, where, True),
            **{**common_from_hf(hf, where), "pad_token_id": read(hf, "pad_token_id", int, where, d["pad_token_id"])},
        )

    def config_to_hf(self, config: ModelConfig) -> dict[str, Any]:
        return dict(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_positions, type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.norm_eps, hidden_act=ACTIVATION_BACK[config.activation],
            hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.attention_dropout,
            classifier_dropout=config.classifier_dropout, initializer_range=config.initializer_range,
            tie_word_embeddings=config.tie_word_embeddings, **common_to_hf(config),
        )

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
    recipe = Recipe("mlm", "roberta")
    base_prefix = "roberta."
    architectures = {None: "RobertaModel", "mlm": "RobertaForMaskedLM",
                     "sequence_classification": "RobertaForSequenceClassification",
                     "token_classification": "RobertaForTokenClassification",
                     "question_answering": "RobertaForQuestionAnswering"}
    ignore = (r"position_ids$", r"^lm_head\.decoder\.(weight|bias)$")
    positions_from_padding = True
    classifier = "dense_tanh"
    defaults = dict(vocab_size=50265, pad_token_id=1, type_vocab_size=1)
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
