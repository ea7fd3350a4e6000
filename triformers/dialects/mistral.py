"""Mistral checkpoints (v0.1 with a 4096-token sliding window on every layer; v0.3 without one, head_dim 128):
transformers' `MistralModel`, `MistralForCausalLM` and the generic heads.

Llama's math (`modeling_mistral.py`) plus `sliding_window`: a query sees the keys k > q - window only
(`masking_utils.sliding_window_overlay`), on every layer (a `layer_types` in a Mistral config is ignored
by transformers, which warns; here it stays in `extra`). During generation those layers keep their keys in
a ring of `window` slots (layers/kv_cache.py), as transformers' sliding-window cache bounds them.
"""

from __future__ import annotations

from .base import NULL, Key
from .decoder_keys import rope_keys, size_keys
from .keys import common_keys
from .llama import LlamaDialect, generic_classifier_dropout


class MistralDialect(LlamaDialect):
    model_type = "mistral"
    head_prefixes = {}
    architectures = {None: "MistralModel", "lm": "MistralForCausalLM",
                     "sequence_classification": "MistralForSequenceClassification",
                     "token_classification": "MistralForTokenClassification",
                     "question_answering": "MistralForQuestionAnswering"}
    # MistralConfig (transformers 5.24 configuration_mistral.py)
    keys = (
        *size_keys(vocab=32000, hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, head_dim=None,
                   act_key="hidden_act", act="silu", max_positions=4096 * 32, eps=1e-6),
        Key("sliding_window", "sliding_window", (int, NULL), 4096),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        *rope_keys(),
        generic_classifier_dropout(),
        *common_keys(bos=1, eos=2),
    )
    fixed = dict(LlamaDialect.fixed, qkv_bias=False, out_bias=False, mlp_bias=False)
