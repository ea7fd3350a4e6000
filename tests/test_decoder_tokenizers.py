"""Tokenizer folders of today's decoders: tokenizer.json with tokenizer_config.json naming the class transformers 5.24
wrote it with (LlamaTokenizer(Fast), Qwen2Tokenizer, GemmaTokenizer, GPTNeoXTokenizer, PreTrainedTokenizerFast),
or no class and a config.json model_type. Each folder is written by transformers' own class over a small vocabulary
and read by both libraries: the same ids (single, batch-padded on the class's padding side), decoded text and
special tokens; what triformers saves, transformers reads to the same ids.
"""

from __future__ import annotations

import json

import pytest
import transformers

from triformers import AutoTokenizer

TEXTS = ("Hello world", "the quick brown fox, then THE END.", "  two  spaces\nand a new line", "naïve café 🙂 42")
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def _spm_like(specials: list[str]) -> tuple[dict, list]:
    """A byte-fallback BPE vocabulary in the SentencePiece style (▁ for spaces) with a few merges."""
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + ["▁"] + LETTERS + ["▁t", "he", "▁the", "▁w", "or"]
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "w"), ("o", "r")]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}, merges


def _byte_level(specials: list[str]) -> tuple[dict, list]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode().values()
    pieces = specials + list(alphabet) + ["Ġt", "he", "Ġthe", "Ġw", "or"]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "w"), ("o", "r")]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}, merges


def build(name: str):
    from transformers import GemmaTokenizer, GPTNeoXTokenizer, LlamaTokenizer, Qwen2Tokenizer

    if name == "llama":
        return LlamaTokenizer(*_spm_like(["<unk>", "<s>", "</s>"]))
    if name == "gemma":
        return GemmaTokenizer(*_spm_like(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]))
    if name == "qwen2":
        return Qwen2Tokenizer(*_byte_level(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    return GPTNeoXTokenizer(*_byte_level(["<|endoftext|>", "<|padding|>"]))


# (folder written by, tokenizer_class to write into tokenizer_config.json; None: leave the file's)
CASES = [("llama", None), ("llama", "LlamaTokenizerFast"), ("llama", "PreTrainedTokenizerFast"), ("gemma", None),
         ("gemma", "GemmaTokenizerFast"), ("qwen2", None), ("qwen2", "Qwen2TokenizerFast"), ("gpt_neox", None),
         ("gpt_neox", "GPTNeoXTokenizerFast")]


def assert_same(ours, theirs) -> None:
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours(text)["input_ids"] == ids, text
        assert ours.decode(ids) == theirs.decode(ids), text
    assert ours.special_tokens_map == {k: v for k, v in theirs.special_tokens_map.items()}
    assert ours.padding_side == theirs.padding_side
    if theirs.pad_token is not None:
        batch, expected = ours(list(TEXTS), padding=True), theirs(list(TEXTS), padding=True)
        assert batch["input_ids"] == expected["input_ids"] and batch["attention_mask"] == expected["attention_mask"]


@pytest.mark.parametrize("name, tokenizer_class", CASES)
def test_tokenizer_json_folders_read_as_transformers(name, tokenizer_class, tmp_path):
    build(name).save_pretrained(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    if tokenizer_class is not None:
        config["tokenizer_class"] = tokenizer_class
        config_file.write_text(json.dumps(config))
    theirs, ours = transformers.AutoTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert_same(ours, theirs)
    ours.save_pretrained(tmp_path / "saved")
    assert_same(ours, transformers.AutoTokenizer.from_pretrained(tmp_path / "saved"))


@pytest.mark.parametrize("name, model_type", [("llama", "llama"), ("gemma", "gemma3_text"), ("qwen2", "qwen3"),
                                              ("gpt_neox", "gpt_neox")])
def test_a_class_named_only_by_config_json_gives_its_defaults(name, model_type, tmp_path):
    """tokenizer_config.json without tokenizer_class, special tokens or padding side: the model_type's class
    decides them, in both libraries."""
    build(name).save_pretrained(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    dropped = ("tokenizer_class", "padding_side")
    kept = {k: v for k, v in config.items() if k not in dropped and not k.endswith("_token")}
    config_file.write_text(json.dumps(kept))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    theirs, ours = transformers.AutoTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert_same(ours, theirs)
