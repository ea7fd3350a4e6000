"""Gemma 2 checkpoints (transformers' `Gemma2Model`, `Gemma2ForCausalLM`, sequence and token classification).

Gemma (`modeling_gemma2.py`) plus: four norms per block (before and after attention, before and after the
MLP: `sandwich_norm`), scores scaled by `query_pre_attn_scalar`**-0.5, attention scores softcapped at
`attn_logit_softcapping` (50) and the LM logits at `final_logit_softcapping` (30): tanh caps SDPA cannot
apply, so attention runs `eager_attention` (transformers, too, runs Gemma 2 eagerly); sliding-window
layers alternating with global ones (`layer_types`, by default even layers slide).
"""

from __future__ import annotations

from .base import NULL, Key
from .decoder_keys import every, layer_types_key, rope_keys
from .gemma import GEMMA_FIXED, gemma_keys
from .keys import common_keys
from .llama import LlamaDialect


def gemma2_attention_keys(*, attention_cap: float | None, final_cap: float | None,
                          period: int | None = None) -> tuple[Key, ...]:
    """Scale, softcaps and the sliding layers (Gemma 2: every other; Gemma 3: all but every `period`-th)."""
    pattern = every(2) if period is None else (lambda read: every(read["sliding_window_pattern"])(read))
    return (
        # the scale follows head_dim while it is head_dim's (so a resized model keeps it so)
        Key("query_pre_attn_scalar", "attention_scale", (int, float), 256,
            load=lambda value, read: None if value == (read["head_dim"] or read["hidden_size"]
                                                      // read["num_attention_heads"]) else value ** -0.5,
            save=lambda c: c.attention_head_dim if c.attention_scale is None else _scalar(c.attention_scale)),
        Key("final_logit_softcapping", "final_logit_softcap", (float, NULL), final_cap),
        Key("attn_logit_softcapping", "attention_softcap", (float, NULL), attention_cap),
        Key("sliding_window", "sliding_window", (int, NULL), 4096),
        *((Key("sliding_window_pattern", None, int, period, optional=True),) if period is not None else ()),
        layer_types_key(pattern, active=lambda read: read["sliding_window"] is not None),
    )


def _scalar(scale: float) -> int | float:
    """query_pre_attn_scalar from our scale: scale**-2, as the integer config files hold when it is one."""
    value = scale ** -2
    return round(value) if abs(value - round(value)) < 1e-6 * value else value


class Gemma2Dialect(LlamaDialect):
    model_type = "gemma2"
    head_prefixes = {}
    architectures = {None: "Gemma2Model", "lm": "Gemma2ForCausalLM",
                     "sequence_classification": "Gemma2ForSequenceClassification",
                     "token_classification": "Gemma2ForTokenClassification"}
    # Gemma2Config (transformers 5.24 configuration_gemma2.py)
    keys = (
        *gemma_keys(vocab=256000, hidden=2304, intermediate=9216, layers=26, heads=8, kv_heads=4,
                    act_key="hidden_activation", max_positions=8192, bidirectional_default=None),
        *gemma2_attention_keys(attention_cap=50.0, final_cap=30.0),
        *rope_keys(),
        *common_keys(pad=0, eos=1, bos=2),
    )
    fixed = dict(GEMMA_FIXED, sandwich_norm=True)
    ignore = LlamaDialect.ignore
