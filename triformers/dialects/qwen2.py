"""Qwen2 / Qwen2.5 checkpoints (transformers' `Qwen2Model`, `Qwen2ForCausalLM` and the generic heads).

Llama's math (`modeling_qwen2.py`) with biases on the q, k and v projections only (`o_proj` and the MLP
have none), and a sliding window that is off unless `use_sliding_window` (then on the layers from
`max_window_layers` on, or as `layer_types` lists them). `Qwen2ForQuestionAnswering` nests the body under
`transformer.`, the other heads under `model.`.
"""

from __future__ import annotations

from .base import NULL, Key
from .decoder_keys import layer_types_key, rope_keys, size_keys
from .keys import common_keys
from .llama import LlamaDialect, generic_classifier_dropout


def sliding_keys() -> tuple[Key, ...]:
    """Qwen2Config's window: `sliding_window` counts only with `use_sliding_window`; the layers it applies to
    are `layer_types`' sliding ones, by default those from `max_window_layers` on."""
    return (
        Key("use_sliding_window", None, bool, False, save=lambda c: c.sliding_window is not None),
        Key("sliding_window", "sliding_window", (int, NULL), 4096,
            load=lambda value, read: value if read["use_sliding_window"] else None, save=lambda c: c.sliding_window),
        Key("max_window_layers", None, int, 28),
        layer_types_key(lambda read: ["sliding_attention" if i >= read["max_window_layers"] else "full_attention"
                                      for i in range(read["num_hidden_layers"])],
                        active=lambda read: read["use_sliding_window"] and read["sliding_window"] is not None),
    )


class Qwen2Dialect(LlamaDialect):
    model_type = "qwen2"
    architectures = {None: "Qwen2Model", "lm": "Qwen2ForCausalLM",
                     "sequence_classification": "Qwen2ForSequenceClassification",
                     "token_classification": "Qwen2ForTokenClassification",
                     "question_answering": "Qwen2ForQuestionAnswering"}
    # Qwen2Config (transformers 5.24 configuration_qwen2.py)
    keys = (
        *size_keys(vocab=151936, hidden=4096, intermediate=22016, layers=32, heads=32, kv_heads=32, head_dim=None,
                   act_key="hidden_act", act="silu", max_positions=32768, eps=1e-6, head_dim_field=False),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        *sliding_keys(),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        *rope_keys(),
        generic_classifier_dropout(),
        *common_keys(),
    )
    fixed = dict(LlamaDialect.fixed, qkv_bias=True, out_bias=False, mlp_bias=False)
