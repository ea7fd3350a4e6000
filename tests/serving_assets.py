"""Tiny checkpoints for the serving tests, built in a temporary folder with no download: a byte-level BPE
tokenizer trained here on standard-library docstrings, with ChatML's control tokens and chat template; a
2-layer GPT-2 over it (transformers builds and saves it); a 2-layer BERT over the same tokenizer for
embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    import collections
    import json as json_module
    import textwrap
    texts = [m.__doc__ or "" for m in (collections, json_module, textwrap, Path, dict, str, list)]
    return [line for text in texts for line in text.splitlines() if line.strip()]


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_corpus(), trainer)
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "bos_token": None, "chat_template": CHATML}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def build_gpt2(folder: Path, positions: int = 128) -> Path:
    import transformers
    from tokenizers import Tokenizer

    build_tokenizer(folder)
    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=32, n_layer=2, n_head=2,
                                     initializer_range=0.3, eos_token_id=SPECIALS.index("<|im_end|>"),
                                     bos_token_id=SPECIALS.index("<|im_end|>"))
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


def build_bert(folder: Path) -> Path:
    import transformers
    from tokenizers import Tokenizer

    build_tokenizer(folder)
    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    transformers.BertModel(config).eval().save_pretrained(folder)
    return folder
