"""Tiny random checkpoints for the generation parity tests, built and saved by transformers 5.24 (the oracle),
each loaded by both libraries: GPT-2, T5 v1.1 (flan-T5's layout) and BART, odd sizes, with a large
initialisation so that the best next token wins by a wide margin and fp32 rounding between the two
implementations can never flip an argmax, a beam ranking or a sampled token (ids compare exactly).
"""

from __future__ import annotations

from pathlib import Path

import torch

import triformers

VOCAB = 97
EOS = 2


def batch(pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts of lengths 3, 5 and 6, left-padded to 6."""
    lengths = torch.tensor([3, 5, 6])
    mask = (torch.arange(6)[None, :] >= 6 - lengths[:, None]).long()  # (3, 6)
    ids = torch.arange(5, 5 + 18).view(3, 6) % VOCAB
    return ids.masked_fill(mask == 0, pad), mask


def build(kind: str, folder: Path, generation: dict | None = None, positions: int = 160):
    """(transformers model, triformers model) of `kind` (gpt2 / t5 / bart), both loaded from the folder
    transformers saved; `generation` fields go into its generation_config.json."""
    import transformers

    torch.manual_seed({"gpt2": 0, "t5": 1, "bart": 1}[kind])
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=36, n_layer=3, n_head=3, n_positions=positions,
                                         initializer_range=0.8, bos_token_id=1, eos_token_id=EOS, pad_token_id=0,
                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = transformers.GPT2LMHeadModel(config)
    elif kind == "t5":
        config = transformers.T5Config(vocab_size=VOCAB, d_model=36, d_kv=12, d_ff=44, num_layers=2, num_heads=3,
                                       initializer_factor=8.0, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                       decoder_start_token_id=0, feed_forward_proj="gated-gelu")
        model = transformers.T5ForConditionalGeneration(config)
    else:
        config = transformers.BartConfig(
            vocab_size=VOCAB, d_model=36, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
            decoder_attention_heads=3, encoder_ffn_dim=44, decoder_ffn_dim=44, max_position_embeddings=positions,
            init_std=0.8, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1,
            bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=EOS, forced_eos_token_id=EOS)
        model = transformers.BartForConditionalGeneration(config)
    if generation:
        model.generation_config.update(**generation)
    model.eval().save_pretrained(folder)
    auto = transformers.AutoModelForCausalLM if kind == "gpt2" else transformers.AutoModelForSeq2SeqLM
    ours = triformers.AutoModelForCausalLM if kind == "gpt2" else triformers.AutoModelForSeq2SeqLM
    return auto.from_pretrained(folder).eval(), ours.from_pretrained(folder)


def pad_of(hf_model) -> int:
    return hf_model.config.pad_token_id
