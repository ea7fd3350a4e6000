"""Gemma 3 text checkpoints (Gemma-3-270M / 1B: transformers' `Gemma3TextModel`, `Gemma3ForCausalLM`,
`Gemma3TextForSequenceClassification`).

Gemma 2 (`modeling_gemma3.py`) without the softcaps by default, plus an RMS norm over head_dim on q and k
(`q_norm`, `k_norm`, Gemma's (1 + w) kind), five sliding-window layers to one global (`layer_types`; older
files: `sliding_window_pattern`), and two rotary bases: global layers `rope_theta` (1e6, with any
`rope_scaling`), sliding ones `rope_local_base_freq` (1e4) - in v5 files `rope_parameters` nested by layer
type. transformers 5.24's Gemma3Attention never passes `attn_logit_softcapping` to its attention function, so
a file that sets it is refused rather than read one way or the other.
"""

from __future__ import annotations

import dataclasses

from .decoder_keys import nested_rope_keys
from .gemma import GEMMA_FIXED, gemma_keys
from .gemma2 import gemma2_attention_keys
from .keys import common_keys
from .llama import LlamaDialect

UNUSED_CAP = (" (transformers 5.24's Gemma3Attention ignores it; triformers refuses rather than guess: set it to "
              "null)")


class Gemma3TextDialect(LlamaDialect):
    model_type = "gemma3_text"
    head_prefixes = {}
    architectures = {None: "Gemma3TextModel", "lm": "Gemma3ForCausalLM",
                     "sequence_classification": "Gemma3TextForSequenceClassification"}
    # Gemma3TextConfig (transformers 5.24 configuration_gemma3.py)
    keys = (
        *gemma_keys(vocab=262208, hidden=2304, intermediate=9216, layers=26, heads=8, kv_heads=4,
                    act_key="hidden_activation", max_positions=131072, bidirectional_default=False),
        *(key if key.name != "attn_logit_softcapping" else dataclasses.replace(key, only=(None,), why=UNUSED_CAP)
          for key in gemma2_attention_keys(attention_cap=None, final_cap=None, period=6)),
        *nested_rope_keys(theta=1_000_000.0, local_theta=10_000.0),
        *common_keys(pad=0, eos=1, bos=2),
    )
    fixed = dict(GEMMA_FIXED, sandwich_norm=True, qk_norm=True)
