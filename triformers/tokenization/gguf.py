"""A tokenizer from a GGUF file's metadata: vocabulary, merges, token types, special ids, chat template.

A GGUF file has no tokenizer.json; llama.cpp stores the tokenizer as metadata (`tokenizer.ggml.*`). Two kinds
cover the architectures triformers loads (reference: transformers 5.24 `integrations/gguf/
gguf_tokenizer_mapping.py` and the classes it hands the vocabulary to, whose pipelines are rebuilt here):
- `gpt2`: byte-level BPE (SmolLM, Llama 3, Qwen 2/3). Tokens are respelled into the byte alphabet where a file
  wrote them as plain text, and `tokenizer.ggml.pre` picks the split regex the merges were learned with
  (llama 3's, Qwen 2's, ... ; others split as GPT-2 does).
- `llama`: SentencePiece-style BPE with byte fallback (Llama 2, Mistral; Gemma with its own pipeline), merges
  from the file or, when it has none, rebuilt from the vocabulary (ranked by score; Gemma by file order).
Tokens marked control (type 3) become special added tokens and user-defined ones (type 4) plain added tokens,
as llama.cpp matches both whole. Special tokens come from the ids in the metadata, `add_bos_token` /
`add_eos_token` from its flags (a `llama` vocabulary that does not say adds BOS, as llama.cpp does), and the
chat template from `tokenizer.chat_template`. Unlike transformers, no default special token that the file
lacks (`<|endoftext|>`, `<s>`, ...) is appended to the vocabulary: the model has no embedding for it.
"""

from __future__ import annotations

import functools
from typing import Any

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from ..errors import TokenizerError
from .backend import backend_errors
from .converters import Family

GGUF_FAMILY = Family("generic", "TokenizersBackend", {}, ("input_ids", "attention_mask"))
CONTROL, USER_DEFINED = 3, 4
MAX_TOKENS = 2**24
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# `tokenizer.ggml.pre` -> the split regex (those of transformers' table for the families triformers loads)
PRE_TOKENIZER_SPLITS = {**dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx"), _LLAMA3_SPLIT),
                        **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT)}
# the default special tokens of the class transformers builds each kind with; made special where the file has them
CLASS_SPECIALS = {"gpt2": ("<|endoftext|>",), "llama": ("<unk>", "<s>", "</s>"),
                  "gemma": ("<unk>", "<bos>", "<eos>", "<pad>", "<mask>")}
SPECIAL_IDS = (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
               ("pad_token", "padding_token_id"))
GEMMA_ARCHITECTURES = ("gemma", "gemma2", "gemma3")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet of byte-level BPE vocabularies)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


class _Metadata:
    """The tokenizer keys of one file, each checked where it is read; errors name the file and the key."""

    def __init__(self, gguf):
        self.gguf = gguf

    def fail(self, key: str, expected: str) -> TokenizerError:
        value = self.gguf.metadata[key]
        shown = f"a list of {len(value)}" if isinstance(value, list) else repr(value)[:60]
        return TokenizerError(f"{self.gguf.path}: metadata key {key!r} must be {expected}, got {shown}")

    def get(self, key: str, kind: str, length: int | None = None) -> Any:
        from ..io.gguf_mapping import FLOATS, INTEGERS

        if key not in self.gguf.metadata:
            return None
        value, types = self.gguf.metadata[key], self.gguf.types[key]
        scalar = {"string": (8,), "bool": (7,), "id": INTEGERS}
        lists = {"strings": (8,), "ints": INTEGERS, "floats": FLOATS + INTEGERS}
        if kind in scalar:
            if types[0] not in scalar[kind] or (kind == "id" and not 0 <= value < (length or MAX_TOKENS)):
                raise self.fail(key, {"string": "a string", "bool": "a bool",
                                      "id": f"a token id in 0..{(length or MAX_TOKENS) - 1}"}[kind])
            return value
        if types[0] != 9 or types[1] not in lists[kind] or (length is not None and len(value) != length):
            size = f" of {length}" if length is not None else ""
            raise self.fail(key, f"a list{size} of {kind}")
        return value


def tokenizer_parts(gguf) -> tuple[Backend, dict[str, Any]]:
    """The backend and the tokenizer_config.json-style settings (special tokens, flags, chat template) that the
    file's metadata describe."""
    meta = _Metadata(gguf)
    kind = meta.get("tokenizer.ggml.model", "string")
    if kind is None:
        raise TokenizerError(f"{gguf.path} holds no tokenizer (metadata key 'tokenizer.ggml.model' is missing)")
    tokens = meta.get("tokenizer.ggml.tokens", "strings")
    if not tokens or len(tokens) > MAX_TOKENS:
        raise TokenizerError(f"{gguf.path}: metadata key 'tokenizer.ggml.tokens' must list 1..{MAX_TOKENS} tokens")
    types = meta.get("tokenizer.ggml.token_type", "ints", len(tokens)) or []
    merges = _merges(meta)
    arch = gguf.metadata.get("general.architecture")
    if kind == "gpt2":
        backend, defaults = _byte_level(tokens, merges, meta.get("tokenizer.ggml.pre", "string"), gguf), "gpt2"
    elif kind == "llama":
        scores = meta.get("tokenizer.ggml.scores", "floats", len(tokens))
        gemma = arch in GEMMA_ARCHITECTURES
        backend, defaults = _sentencepiece(tokens, merges, scores, gemma, gguf), "gemma" if gemma else "llama"
    else:
        raise TokenizerError(f"{gguf.path}: tokenizer model {kind!r} ('tokenizer.ggml.model') is not supported; "
                             "supported: gpt2 (byte-level BPE), llama (SentencePiece BPE)")
    vocab = backend.get_vocab()
    _added(backend, tokens, types, [t for t in CLASS_SPECIALS[defaults] if t in vocab], kind == "gpt2")
    config: dict[str, Any] = {}
    template = meta.get("tokenizer.chat_template", "string")
    if template is not None:
        config["chat_template"] = template
    for flag in ("add_bos_token", "add_eos_token"):
        value = meta.get(f"tokenizer.ggml.{flag}", "bool")
        if value is not None:
            config[flag] = value
    if kind == "llama":
        config.setdefault("add_bos_token", True)  # llama.cpp adds BOS to a sentencepiece vocabulary that does not say
    for name, key in SPECIAL_IDS:
        index = meta.get(f"tokenizer.ggml.{key}", "id", len(tokens))
        config[name] = tokens[index] if index is not None else None
    if defaults == "gemma":  # what transformers' GemmaTokenizer adds: its mask token, left padding
        config["padding_side"] = "left"
        if "<mask>" in vocab:
            config["mask_token"] = "<mask>"
    return backend, config


def _merges(meta: _Metadata) -> list[tuple[str, str]] | None:
    lines = meta.get("tokenizer.ggml.merges", "strings")
    if lines is None:
        return None
    merges = []
    for index, line in enumerate(lines):
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{meta.gguf.path}: metadata key 'tokenizer.ggml.merges'[{index}] is not two tokens "
                                 f"separated by one space: {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _byte_level(tokens: list[str], merges, pre: str | None, gguf) -> Backend:
    """GPT-2's pipeline over the file's vocabulary (transformers' `GPT2Tokenizer`), split as `pre` says."""
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8")): index
             for index, token in enumerate(tokens)}
    with backend_errors(f"GGUF tokenizer of {gguf.path}"):
        backend = Backend(BPE(vocab, merges or [], dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                              fuse_unk=False))
    split = PRE_TOKENIZER_SPLITS.get(pre)
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                         pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                  use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(tokens: list[str], merges, scores, gemma: bool, gguf) -> Backend:
    """SentencePiece BPE with byte fallback (transformers' `LlamaTokenizer`, or `GemmaTokenizer` for Gemma, whose
    files spell runs of spaces as spaces and rank merges by file order rather than by score)."""
    if gemma:
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {token: index for index, token in enumerate(tokens)}
    if merges is None:
        if gemma:
            ranks = {token: -index for index, token in enumerate(tokens)}
        elif scores is not None:
            ranks = dict(zip(tokens, scores, strict=True))
        else:
            raise TokenizerError(f"{gguf.path}: a sentencepiece vocabulary needs 'tokenizer.ggml.merges' or "
                                 "'tokenizer.ggml.scores'")
        merges = generate_merges(vocab, ranks)
    with backend_errors(f"GGUF tokenizer of {gguf.path}"):
        backend = Backend(BPE(vocab, merges, fuse_unk=True, byte_fallback=True, dropout=None,
                              **({"unk_token": "<unk>"} if gemma else {})))
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if gemma:
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        backend.decoder = decoders.Sequence(steps)
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        backend.decoder = decoders.Sequence([*steps, decoders.Strip(content=" ", left=1)])
    return backend


def generate_merges(vocab: dict[str, int], ranks: dict[str, float]) -> list[tuple[str, str]]:
    """The merges a vocabulary implies: every split of a token into two tokens, best-ranked token first
    (transformers' `generate_merges`, which sentencepiece vocabularies without merges are loaded with)."""
    merges = []
    for merge, rank in ranks.items():
        local = [(merge[:i], merge[i:], rank) for i in range(1, len(merge))
                 if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _added(backend: Backend, tokens: list[str], types: list[int], specials: list[str], byte_level: bool) -> None:
    """The class's default special tokens, the control tokens (special) and the user-defined ones (plain), added
    as llama.cpp matches them: whole, before the model splits the text. A control token spelled outside a
    byte-level alphabet is a mislabel of llama.cpp's and stays a plain vocabulary entry."""
    alphabet = set(bytes_to_unicode().values()) if byte_level else None
    kinds = list(zip(tokens, types, strict=False))  # a file without token types has neither kind
    control = [t for t, kind in kinds if kind == CONTROL and (alphabet is None or set(t) <= alphabet)]
    vocab = backend.get_vocab()
    user = [t for t, kind in kinds if kind == USER_DEFINED and t in vocab]
    with backend_errors("adding the GGUF file's special tokens"):
        special = list(dict.fromkeys(specials + control))
        if special:
            backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special])
        if user:
            backend.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
