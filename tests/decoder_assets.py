"""Tiny random checkpoints of today's decoders, built with transformers 5.24's own config classes.

Shapes are deliberately not the usual ones: fewer key/value heads than heads (and more than one, except
Gemma's multi-query), head_dim != hidden / heads, odd vocabulary and MLP widths, 2-3 layers, sliding windows
shorter than the prompt, and each rope type the dialect's real checkpoints use (Llama 3.1's llama3, Qwen2.5's
yarn, Phi-3's longrope with a prompt longer than its pre-training length, Gemma 3's linear scaling on global
layers with a local base on sliding ones, Pythia's partial rotary), plus dynamic and linear scaling on Llama.
"""

from __future__ import annotations

import torch
import transformers

VOCAB = 97
COMMON = dict(vocab_size=VOCAB, intermediate_size=67, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _llama(max_positions: int = 32, **rope):
    return transformers.LlamaConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                    head_dim=10, max_position_embeddings=max_positions, tie_word_embeddings=True,
                                    rope_parameters={"rope_theta": 1e5, **rope}, **COMMON)


CONFIGS = {
    "llama": lambda: _llama(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                            original_max_position_embeddings=16),
    "llama_dynamic": lambda: _llama(8, rope_type="dynamic", factor=2.0),  # prompts run past max_position_embeddings
    "llama_linear": lambda: _llama(rope_type="linear", factor=2.5),
    "mistral": lambda: transformers.MistralConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                                                  num_key_value_heads=2, head_dim=10, sliding_window=4, **COMMON),
    "qwen2": lambda: transformers.Qwen2Config(
        hidden_size=48, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=3, use_sliding_window=True,
        sliding_window=4, max_window_layers=1, max_position_embeddings=32, tie_word_embeddings=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 8},
        **COMMON),
    "qwen3": lambda: transformers.Qwen3Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                                              num_key_value_heads=2, head_dim=12, **COMMON),
    "gemma": lambda: transformers.GemmaConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=1, head_dim=16, **COMMON),
    "gemma2": lambda: transformers.Gemma2Config(hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                                num_key_value_heads=2, head_dim=16, sliding_window=4,
                                                query_pre_attn_scalar=12, attn_logit_softcapping=5.0,
                                                final_logit_softcapping=3.0, **COMMON),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(
        hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}, **COMMON),
    "phi3": lambda: transformers.Phi3Config(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=32,
        original_max_position_embeddings=8, sliding_window=6,
        rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "partial_rotary_factor": 0.75,
                         "short_factor": [1.0, 1.1, 1.3], "long_factor": [1.5, 2.0, 3.0]}, **COMMON),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                                   rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                                    "partial_rotary_factor": 0.25}, **COMMON),
    "gpt_neox_sequential": lambda: transformers.GPTNeoXConfig(hidden_size=48, num_hidden_layers=2,
                                                              num_attention_heads=4,
                                                              use_parallel_residual=False, **COMMON),
    "opt": lambda: transformers.OPTConfig(vocab_size=VOCAB, hidden_size=48, ffn_dim=67, num_hidden_layers=2,
                                          num_attention_heads=4, word_embed_proj_dim=24, pad_token_id=0, dropout=0.0),
    "opt_post_norm": lambda: transformers.OPTConfig(vocab_size=VOCAB, hidden_size=48, ffn_dim=67, num_hidden_layers=2,
                                                    num_attention_heads=4, do_layer_norm_before=False, pad_token_id=0,
                                                    dropout=0.0),
}
MODEL_TYPES = {"llama": "llama", "llama_dynamic": "llama", "llama_linear": "llama", "gpt_neox_sequential": "gpt_neox",
               "opt_post_norm": "opt"}


def model_type(kind: str) -> str:
    return MODEL_TYPES.get(kind, kind)


def heads_of(kind: str) -> list[str]:
    """The heads transformers 5.24 has for this model type (its Auto mappings)."""
    from transformers.models.auto import modeling_auto as auto

    tables = {"base": auto.MODEL_MAPPING_NAMES, "lm": auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
              "sequence_classification": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
              "token_classification": auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
              "question_answering": auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES}
    return [head for head, table in tables.items() if model_type(kind) in table]


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Redraw every parameter: weights N(0, 0.15), biases N(0, 0.1), norm scales 1 + N(0, 0.1) (Gemma's
    (1 + w) norms: w ~ N(0, 0.1)). transformers initialises biases to 0 and norms to 1, which would hide a
    wrong bias layout or a swapped norm."""
    generator = torch.Generator().manual_seed(seed)
    unit_offset = "gemma" in model.config.model_type
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if ("norm" in name or "layernorm" in name) and name.endswith("weight"):
                param.copy_((0 if unit_offset else 1) + 0.1 * noise)
            else:
                param.copy_((0.15 if param.dim() > 1 else 0.1) * noise)


def build(kind: str, head: str, folder, seed: int = 0, num_labels: int = 3) -> torch.nn.Module:
    """A random transformers model of this kind and head, saved to `folder`; returned in eval()."""
    auto = {"base": transformers.AutoModel, "lm": transformers.AutoModelForCausalLM,
            "sequence_classification": transformers.AutoModelForSequenceClassification,
            "token_classification": transformers.AutoModelForTokenClassification,
            "question_answering": transformers.AutoModelForQuestionAnswering}[head]
    config = CONFIGS[kind]()
    config.num_labels = num_labels
    torch.manual_seed(seed)
    model = auto.from_config(config).eval()
    randomize(model, seed)
    model.save_pretrained(folder)
    return model


def left_padded(length: int = 11, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, length) ids and mask (pad id 0): rows 1 and 2 left-padded by 3 and 6; row 0 has a hole at 2..3
    (positions counted over kept tokens then differ from indices: OPT's table, generation's rotary ids).
    Longer than every sliding window and than the rope types' pre-training lengths above."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 2:4] = 0
    mask[1, :3] = 0
    mask[2, :6] = 0
    return ids.masked_fill(mask == 0, 0), mask
