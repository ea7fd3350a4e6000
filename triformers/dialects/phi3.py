"""Phi-3 / Phi-3.5 / Phi-4-mini checkpoints (transformers' `Phi3Model`, `Phi3ForCausalLM`, sequence and token
classification).

Llama's math (`modeling_phi3.py`) with q | k | v already fused in the checkpoint (`qkv_proj`, rows q then k
then v: ours as they are) and gate | up too (`gate_up_proj`: gate first, as ours), residual dropout
`resid_pdrop`, an optional sliding window on every layer, partial rotary (`partial_rotary_factor`), and
LongRoPE (short and long factors; "su" and "yarn" are its old names here, as `Phi3Config` renames them),
whose pre-training length is the top-level `original_max_position_embeddings`. The `auto_map` of such
configs is ignored, as every `auto_map` is (triformers never runs code from a model folder).
"""

from __future__ import annotations

from .base import NULL, Key
from .decoder_keys import rope_keys, size_keys
from .keys import common_keys
from .llama import LlamaDialect, generic_classifier_dropout


class Phi3Dialect(LlamaDialect):
    model_type = "phi3"
    head_prefixes = {}
    architectures = {None: "Phi3Model", "lm": "Phi3ForCausalLM",
                     "sequence_classification": "Phi3ForSequenceClassification",
                     "token_classification": "Phi3ForTokenClassification"}
    # Phi3Config (transformers 5.24 configuration_phi3.py); embd_pdrop, unused by Phi3Model, stays in `extra`
    keys = (
        *size_keys(vocab=32064, hidden=3072, intermediate=8192, layers=32, heads=32, kv_heads=None, head_dim=None,
                   act_key="hidden_act", act="silu", max_positions=4096, eps=1e-5, head_dim_field=False),
        Key("resid_pdrop", "dropout", float, 0.0),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("sliding_window", "sliding_window", (int, NULL), None),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        *rope_keys(fraction_key="partial_rotary_factor", fraction_in_parameters=True,
                   renamed={"su": "longrope", "yarn": "longrope"}, original_key="original_max_position_embeddings"),
        generic_classifier_dropout(),
        *common_keys(bos=1, eos=32000, pad=32000),
    )
    fixed = dict(LlamaDialect.fixed, qkv_bias=False, out_bias=False, mlp_bias=False)
    fused_qkv, fused_gate_up = "qkv_proj", "gate_up_proj"
