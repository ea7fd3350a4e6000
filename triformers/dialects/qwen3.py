"""Qwen3 checkpoints (transformers' `Qwen3Model`, `Qwen3ForCausalLM` and the generic heads).

Qwen2 (`modeling_qwen3.py`) without the fixed q/k/v biases (`attention_bias`, default none) and with an RMS
norm over head_dim on q and k before the rotation (`q_norm`, `k_norm`); head_dim defaults to 128 whatever
hidden / heads is (Qwen3-0.6B: hidden 1024, 16 heads of 128).
"""

from __future__ import annotations

from .base import Key
from .decoder_keys import rope_keys, size_keys
from .keys import common_keys
from .llama import LlamaDialect, generic_classifier_dropout
from .qwen2 import sliding_keys


class Qwen3Dialect(LlamaDialect):
    model_type = "qwen3"
    architectures = {None: "Qwen3Model", "lm": "Qwen3ForCausalLM",
                     "sequence_classification": "Qwen3ForSequenceClassification",
                     "token_classification": "Qwen3ForTokenClassification",
                     "question_answering": "Qwen3ForQuestionAnswering"}
    # Qwen3Config (transformers 5.24 configuration_qwen3.py)
    keys = (
        *size_keys(vocab=151936, hidden=4096, intermediate=22016, layers=32, heads=32, kv_heads=32, head_dim=128,
                   act_key="hidden_act", act="silu", max_positions=32768, eps=1e-6),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        Key("attention_bias", ("qkv_bias", "out_bias"), bool, False, load=lambda value, read: (value, value),
            save=lambda c: c.layer_bias("qkv")),
        *sliding_keys(),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        *rope_keys(),
        generic_classifier_dropout(),
        *common_keys(),
    )
    fixed = dict(LlamaDialect.fixed, qk_norm=True, mlp_bias=False)
