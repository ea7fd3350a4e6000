"""Gemma checkpoints (transformers' `GemmaModel`, `GemmaForCausalLM`, sequence and token classification).

Llama's layout (`modeling_gemma.py`) with Gemma's differences: RMS norms that scale by (1 + weight), computed
in fp32 (`GemmaRMSNorm`), token embeddings multiplied by sqrt(hidden_size) rounded to their dtype
(`GemmaTextScaledWordEmbedding`), GeGLU (tanh GELU gate), head_dim 256 whatever hidden / heads is, often
one key/value head (multi-query attention), and an LM head tied to the embeddings.
"""

from __future__ import annotations

from .base import NULL, Key
from .decoder_keys import rope_keys, size_keys
from .keys import common_keys
from .llama import LlamaDialect, generic_classifier_dropout

GEMMA_FIXED = dict(LlamaDialect.fixed, norm_unit_offset=True, embedding_scale_rounded=True, qkv_bias=False,
                   out_bias=False, mlp_bias=False)
BIDIRECTIONAL = (" (use_bidirectional_attention makes an encoder of it, EmbeddingGemma's; triformers builds the "
                 "causal decoder)")


def gemma_keys(*, vocab: int, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int,
               act_key: str, max_positions: int, bidirectional_default: bool | None) -> tuple[Key, ...]:
    """The keys GemmaConfig, Gemma2Config and Gemma3TextConfig share (their defaults given)."""
    return (
        *size_keys(vocab=vocab, hidden=hidden, intermediate=intermediate, layers=layers, heads=heads,
                   kv_heads=kv_heads, head_dim=256, act_key=act_key, act="gelu_pytorch_tanh",
                   max_positions=max_positions, eps=1e-6, gemma=True),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, True),
        Key("attention_bias", ("qkv_bias", "out_bias"), bool, False, load=lambda value, read: (value, value),
            save=lambda c: c.layer_bias("qkv")),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("use_bidirectional_attention", None, (bool, NULL), bidirectional_default, only=(None, False),
            why=BIDIRECTIONAL),
        generic_classifier_dropout(),
    )


class GemmaDialect(LlamaDialect):
    model_type = "gemma"
    head_prefixes = {}
    architectures = {None: "GemmaModel", "lm": "GemmaForCausalLM",
                     "sequence_classification": "GemmaForSequenceClassification",
                     "token_classification": "GemmaForTokenClassification"}
    # GemmaConfig (transformers 5.24 configuration_gemma.py)
    keys = (
        *gemma_keys(vocab=256000, hidden=3072, intermediate=24576, layers=28, heads=16, kv_heads=16,
                    act_key="hidden_act", max_positions=8192, bidirectional_default=None),
        *rope_keys(),
        *common_keys(pad=0, eos=1, bos=2),
    )
    fixed = GEMMA_FIXED
