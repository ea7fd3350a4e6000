"""Small GGUF files written with the `gguf` package's own GGUFWriter, for tests that need no download.

`quantized_blocks` makes the bytes of one tensor in any supported ggml type: `gguf.quants.quantize` where
gguf can quantize the type, else random bytes in the type's block layout with finite float16 scales (the
K-quants, which gguf only dequantizes). `write_model` writes a tiny model of one architecture, with the
tensors llama.cpp's converter writes for it and a tokenizer in the metadata, so that triformers' conversion
can be compared with transformers' on the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
# where each K-quant keeps its float16 scales (d, then dmin where it has one): ggml-common.h's block layouts
K_SCALES = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}
TEXT = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
        "All happy families are alike; each unhappy family is unhappy in its own way. It was the best of times, "
        "it was the worst of times. Call me Ishmael. 1234 + 5678 = 6912! Don't, won't, can't; they're here.\n")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def quantized_blocks(values: np.ndarray, qtype, rng: np.random.Generator) -> np.ndarray:
    """The bytes of `values` (rows, cols) in `qtype`: quantized by gguf, or random valid blocks for K-quants."""
    if qtype in K_SCALES:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        rows, cols = values.shape
        data = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
        for offset in K_SCALES[qtype]:
            scale = (rng.standard_normal((rows, cols // block)) * 0.01).astype(np.float16)
            data[:, :, offset:offset + 2] = scale.view(np.uint8).reshape(rows, cols // block, 2)
        return data.reshape(rows, -1)
    return gguf.quants.quantize(values.astype(np.float32), qtype)


def add_tensor(writer, name: str, values: np.ndarray, qtype, rng: np.random.Generator) -> None:
    if qtype == Q.F32:
        writer.add_tensor(name, values.astype(np.float32))
    elif qtype == Q.F16:
        writer.add_tensor(name, values.astype(np.float16))
    else:
        writer.add_tensor(name, quantized_blocks(values, qtype, rng), raw_dtype=qtype)


def byte_level_vocab(size: int = 400) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a byte-level BPE trained on TEXT, with ChatML's control tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([TEXT] * 20, trainer)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    import json

    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]
    return tokens, [3 if t in specials else 1 for t in tokens], merges


def sentencepiece_vocab(model: Path) -> tuple[list[str], list[float], list[int]]:
    """(pieces, scores, types) of a SentencePiece model file."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read_bytes())
    return [p.piece for p in proto.pieces], [p.score for p in proto.pieces], [p.type for p in proto.pieces]


def add_tokenizer(writer, kind: str, pre: str | None = None, spm: Path | None = None, gemma: bool = False,
                  **ids: int) -> int:
    """Write a tokenizer into the metadata; returns its vocabulary size."""
    if kind == "gpt2":
        tokens, types, merges = byte_level_vocab()
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre or "default")
        writer.add_token_merges(merges)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_bos_token_id(ids.get("bos", 1))
        writer.add_eos_token_id(ids.get("eos", 2))
        writer.add_pad_token_id(ids.get("pad", 2))
        writer.add_add_bos_token(False)
    else:
        pieces, scores, types = sentencepiece_vocab(spm)
        if gemma:  # Gemma's own special tokens where its vocabulary has them
            pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + pieces[3:]
            scores, types = [0.0] * 5 + scores[3:], [3, 3, 3, 2, 1] + types[3:]
            ids = {"pad": 0, "eos": 1, "bos": 2, "unk": 3, **ids}
            writer.add_pad_token_id(ids["pad"])
        writer.add_tokenizer_model("llama")
        writer.add_token_list(pieces)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(ids.get("bos", 1))
        writer.add_eos_token_id(ids.get("eos", 2))
        writer.add_unk_token_id(ids.get("unk", 0))
        tokens = pieces
    writer.add_chat_template(CHATML)
    return len(tokens)


def write_model(path: Path, arch: str, seed: int = 0, qtype=None, tied: bool = True, spm: Path | None = None,
                layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2, head_dim: int = 16,
                ffn: int = 128, rope_theta: float = 10000.0, rope_freqs: np.ndarray | None = None,
                arch_name: str | None = None, skip: tuple[str, ...] = (), before_write=None) -> Path:
    """A tiny model of `arch` (llama, qwen2, qwen3, gemma3) as llama.cpp lays it out, weights in `qtype` (2-D ones;
    norms and biases stay F32 as llama.cpp keeps them). `arch_name` writes another architecture's name (and key
    prefix), `skip` leaves tensors out, `before_write(writer)` edits the writer before it writes."""
    writer = gguf.GGUFWriter(str(path), arch_name or arch)
    writer.add_name(f"tiny {arch}")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(1e-6)
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)
    if arch in ("qwen3", "gemma3"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "gemma3":
        writer.add_sliding_window(32)
    vocab = add_tokenizer(writer, "llama" if spm else "gpt2", pre="qwen2" if arch.startswith("qwen") else None,
                          spm=spm, gemma=arch == "gemma3")
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    shapes = dict(vocab=vocab, hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim, ffn=ffn)
    _add_weights(writer, arch, layers, shapes, Q.F32 if qtype is None else qtype, tied, skip, seed)
    if before_write is not None:
        before_write(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_weights(writer, arch: str, layers: int, shapes: dict[str, int], qtype, tied: bool, skip: tuple[str, ...],
                 seed: int) -> None:
    """The tensors llama.cpp's converter writes for `arch`, random, in its names and order."""
    rng = np.random.default_rng(seed)
    hidden, heads, kv_heads, head_dim, ffn = (shapes[k] for k in ("hidden", "heads", "kv_heads", "head_dim", "ffn"))

    def weight(name: str, *shape: int) -> None:
        values = rng.standard_normal(shape).astype(np.float32) * 0.05
        if name not in skip:
            add_tensor(writer, name, values, qtype, rng)

    def norm(name: str, size: int) -> None:  # Gemma files store 1 + w
        offset = 1.0 if arch == "gemma3" else 0.0
        values = (rng.standard_normal(size) * 0.1 + 1.0 + offset).astype(np.float32)
        if name not in skip:
            writer.add_tensor(name, values)

    weight("token_embd.weight", shapes["vocab"], hidden)
    norm("output_norm.weight", hidden)
    if not tied:
        weight("output.weight", shapes["vocab"], hidden)
    for i in range(layers):
        b = f"blk.{i}."
        norm(b + "attn_norm.weight", hidden)
        norm(b + "ffn_norm.weight", hidden)
        for name, rows, columns in (("attn_q", heads * head_dim, hidden), ("attn_k", kv_heads * head_dim, hidden),
                                    ("attn_v", kv_heads * head_dim, hidden), ("attn_output", hidden, heads * head_dim),
                                    ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)):
            weight(f"{b}{name}.weight", rows, columns)
        if arch == "qwen2":
            for part, size in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
                bias = (rng.standard_normal(size * head_dim) * 0.1).astype(np.float32)
                writer.add_tensor(f"{b}attn_{part}.bias", bias)
        if arch in ("qwen3", "gemma3"):
            norm(b + "attn_q_norm.weight", head_dim)
            norm(b + "attn_k_norm.weight", head_dim)
        if arch == "gemma3":
            norm(b + "post_attention_norm.weight", hidden)
            norm(b + "post_ffw_norm.weight", hidden)


def patch_tensor_entry(data: bytes, name: str, field: str, value: int) -> bytes:
    """`data` (a GGUF file) with one field (dim0, type or offset) of tensor `name`'s table entry replaced."""
    import struct

    raw = name.encode()
    start = data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)
    dims = struct.unpack_from("<I", data, start)[0]
    where = {"dim0": (start + 4, "<Q"), "type": (start + 4 + 8 * dims, "<I"),
             "offset": (start + 8 + 8 * dims, "<Q")}[field]
    out = bytearray(data)
    struct.pack_into(where[1], out, where[0], value)
    return bytes(out)
