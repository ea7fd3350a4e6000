"""Build a `tokenizers.Tokenizer` from a tokenizer folder: `tokenizer.json`, or the legacy files.

Each family is one `Family` record (its Hugging Face class name, default special tokens and model
inputs); each legacy format is one converter function that assembles the `tokenizers` pipeline the
way transformers 5.x builds it (`models/bert|gpt2|roberta|t5/tokenization_*.py`):
- `vocab.txt` -> WordPiece with `BertNormalizer` (do_lower_case, strip_accents, tokenize_chinese_chars);
- `vocab.json` + `merges.txt` -> byte-level BPE, GPT-2 (no special tokens added) or RoBERTa/BART
  (`<s> A </s>`, `<s> A </s></s> B </s>`);
- `spiece.model` -> T5: the SentencePiece pieces with their scores, `<extra_id_N>` sentinels appended
  in reverse (so `<extra_id_0>` is the last id), precompiled normalizer, WhitespaceSplit + Metaspace,
  `</s>` appended. transformers always builds a Unigram model here (also from a BPE `.model`), and so
  do we, for parity; unlike transformers we keep the model's own `unk_id` (transformers hard-codes 2,
  which turns unknown characters of a non-T5 `.model` into `</s>`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, Unigram, WordPiece

from ..errors import TokenizerError
from ..io.files import MAX_VOCAB_BYTES, parse_json, read_bytes, read_json, read_text
from .backend import backend_errors, check_precompiled, check_precompiled_nodes

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
T5_EXTRA_IDS = 100
MAX_TOKEN_ID = 2**31 - 1  # ids beyond any vocabulary (the backend stores them as u32)


@dataclass(frozen=True)
class Family:
    name: str  # "bert", "gpt2", "roberta", "t5", "generic"
    hf_class: str  # the transformers class that rebuilds the same pipeline
    specials: dict[str, str] = field(default_factory=dict)
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    padding_side: str = "right"  # the class's default where tokenizer_config.json names none


BERT = Family(
    "bert",
    "BertTokenizer",
    {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    ("input_ids", "token_type_ids", "attention_mask"),
)
GPT2 = Family(
    "gpt2", "GPT2Tokenizer", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
)
ROBERTA = Family(
    "roberta",
    "RobertaTokenizer",
    {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": "<mask>",
    },
)
T5 = Family("t5", "T5Tokenizer", {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
GENERIC = Family("generic", "PreTrainedTokenizerFast", {})  # transformers 5: no token_type_ids
# today's decoders' classes (transformers 5.24 `models/{llama,qwen2,gemma,gpt_neox}/tokenization_*.py`): a folder
# of theirs has a tokenizer.json, read as written (the pipeline these classes rebuild from its vocabulary and
# merges is the one they wrote into it); the class gives the default special tokens and padding side
LLAMA = Family("llama", "LlamaTokenizer", {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
               padding_side="left")
QWEN2 = Family("qwen2", "Qwen2Tokenizer",
               {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
GEMMA = Family("gemma", "GemmaTokenizer", {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>",
                                           "pad_token": "<pad>", "mask_token": "<mask>"}, padding_side="left")
GPT_NEOX = Family("gpt_neox", "GPTNeoXTokenizer", {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
                                                   "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"})

# tokenizer_config.json `tokenizer_class` (without a "Fast" suffix) -> family.
CLASS_FAMILIES = {
    "BertTokenizer": BERT,
    "DistilBertTokenizer": BERT,
    "ElectraTokenizer": BERT,
    "MPNetTokenizer": BERT,
    "GPT2Tokenizer": GPT2,
    "BloomTokenizer": GPT2,
    "RobertaTokenizer": ROBERTA,
    "BartTokenizer": ROBERTA,
    "T5Tokenizer": T5,
    "MT5Tokenizer": T5,
    "PreTrainedTokenizer": GENERIC,
    "TokenizersBackend": GENERIC,
    "LlamaTokenizer": LLAMA,
    "CodeLlamaTokenizer": LLAMA,
    "Qwen2Tokenizer": QWEN2,
    "GemmaTokenizer": GEMMA,
    "GPTNeoXTokenizer": GPT_NEOX,
}
# config.json `model_type` -> family, used when tokenizer_config.json names no class.
MODEL_TYPE_FAMILIES = {
    "bert": BERT,
    "distilbert": BERT,
    "electra": BERT,
    "gpt2": GPT2,
    "bloom": GPT2,
    "roberta": ROBERTA,
    "bart": ROBERTA,
    "t5": T5,
    "mt5": T5,
    "umt5": T5,
    # transformers 5.24's TOKENIZER_MAPPING for today's decoders (llama, mistral, phi3: none, the generic class)
    "qwen2": QWEN2,
    "qwen3": QWEN2,
    "gemma": GEMMA,
    "gemma2": GEMMA,
    "gemma3_text": GEMMA,
    "gpt_neox": GPT_NEOX,
    "opt": GPT2,
}


def family_for(tokenizer_class: str | None, model_type: str | None, config_file: Path) -> Family | None:
    """The family a folder's files belong to, or None when nothing says (then the files decide)."""
    if tokenizer_class:
        name = tokenizer_class[:-4] if tokenizer_class.endswith("Fast") else tokenizer_class
        if name not in CLASS_FAMILIES:
            raise TokenizerError(
                f"{config_file}: unknown tokenizer_class {tokenizer_class!r}; supported: "
                + ", ".join(sorted(CLASS_FAMILIES))
            )
        return CLASS_FAMILIES[name]
    return MODEL_TYPE_FAMILIES.get(model_type or "")


def load_tokenizer_json(path: Path) -> Backend:
    text = read_text(path, "tokenizer file", error=TokenizerError)
    tree = parse_json(text, f"tokenizer file {path}", TokenizerError)
    check_precompiled_nodes(tree, f"tokenizer file {path}")
    model = (tree.get("model") if isinstance(tree, dict) else None) or {}
    with backend_errors(f"malformed tokenizer file {path}"):  # the Rust side raises bare Exceptions, or panics
        backend = Backend.from_str(text)
        backend.no_padding()  # padding/truncation baked into a file are set per call instead
        backend.no_truncation()
        if isinstance(model, dict) and model.get("type") == "Unigram":
            # Rebuild from Python-parsed scores: the Rust JSON reader can round a score by one ulp, which
            # flips ties between equal-scoring segmentations (transformers rebuilds the same way).
            vocab = [(str(piece), float(score)) for piece, score in model["vocab"]]
            backend.model = Unigram(vocab, unk_id=model.get("unk_id"),
                                    byte_fallback=bool(model.get("byte_fallback")))
    return backend


def bert_from_vocab_txt(path: Path, config: dict) -> Backend:
    """WordPiece over vocab.txt with BERT's normalizer, as transformers' BertTokenizer builds it."""
    lines = read_text(path, "vocabulary", MAX_VOCAB_BYTES, TokenizerError).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        vocab[token.rstrip("\r")] = index  # a repeated line keeps its last index, as transformers does
    unk = str(config.get("unk_token") or "[UNK]")
    with backend_errors(f"vocabulary {path}"):
        backend = Backend(WordPiece(vocab, unk_token=unk))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=config.get("strip_accents"),
        lowercase=bool(config.get("do_lower_case", True)),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def bert_post_processor(cls: str, cls_id: int, sep: str, sep_id: int) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, cls_id), (sep, sep_id)],
    )


def byte_level_bpe(vocab_file: Path, merges_file: Path, add_prefix_space: bool) -> Backend:
    """Byte-level BPE over vocab.json + merges.txt (GPT-2, RoBERTa, BART), both read by the guarded reader
    and parsed as `tokenizers.models.BPE.read_file` parses them (which would open them itself)."""
    vocab = read_json(vocab_file, "vocabulary", TokenizerError, MAX_VOCAB_BYTES)
    for token, index in vocab.items():
        if type(index) is not int or not 0 <= index <= MAX_TOKEN_ID:
            raise TokenizerError(f"malformed vocabulary {vocab_file}: token {token[:40]!r} has id {index!r}, "
                                 f"not an integer in 0..{MAX_TOKEN_ID}")
    lines = read_text(merges_file, "merges file", MAX_VOCAB_BYTES, TokenizerError).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    merges = []
    for number, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"malformed merges file {merges_file}: line {number} is not two tokens "
                                 f"separated by a space: {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    with backend_errors(f"malformed BPE files {vocab_file} / {merges_file}"):
        backend = Backend(
            BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
        )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    return backend


def gpt2_post_processor(
    bos: str | None, bos_id: int | None, eos: str | None, eos_id: int | None, add_bos: bool, add_eos: bool
) -> processors.TemplateProcessing:
    """transformers' `update_post_processor`: optional bos/eos around each sequence, B typed 1."""
    add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
    single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
    pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
    specials = ([(bos, bos_id)] if add_bos else []) + ([(eos, eos_id)] if add_eos else [])
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def roberta_post_processor(
    cls: str, cls_id: int, sep: str, sep_id: int, add_prefix_space: bool, trim_offsets: bool = True
) -> processors.RobertaProcessing:
    return processors.RobertaProcessing((sep, sep_id), (cls, cls_id), trim_offsets, add_prefix_space)


def read_spm_proto(path: Path):
    """The SentencePiece ModelProto of a `.model` file (needs `sentencepiece` or `protobuf`)."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as model_pb2
    except ImportError:
        raise TokenizerError(
            f"reading {path} needs the SentencePiece model schema: pip install sentencepiece"
        ) from None
    proto = model_pb2.ModelProto()
    data = read_bytes(path, "SentencePiece model", MAX_VOCAB_BYTES, TokenizerError)
    try:
        proto.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError, RecursionError-like nesting errors
        raise TokenizerError(f"malformed SentencePiece model {path}: {err}") from None
    if not proto.pieces:
        raise TokenizerError(f"malformed SentencePiece model {path}: it holds no pieces")
    for index, piece in enumerate(proto.pieces):
        if not math.isfinite(piece.score):
            raise TokenizerError(f"malformed SentencePiece model {path}: piece {index} has score {piece.score}")
    unk_id = proto.trainer_spec.unk_id
    if not -1 <= unk_id < len(proto.pieces):
        raise TokenizerError(f"malformed SentencePiece model {path}: unk_id {unk_id} is not one of its "
                             f"{len(proto.pieces)} pieces")
    if proto.normalizer_spec.precompiled_charsmap:
        check_precompiled(proto.normalizer_spec.precompiled_charsmap, f"SentencePiece model {path}")
    return proto


def t5_from_spm(path: Path, extra_ids: int) -> tuple[Backend, list[str]]:
    """T5's pipeline over a SentencePiece model; also returns the model's control pieces (<s>, </s>)."""
    proto = read_spm_proto(path)
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]  # <extra_id_0> is last
    unk_id = proto.trainer_spec.unk_id
    with backend_errors(f"SentencePiece model {path}"):
        backend = Backend(Unigram(vocab, unk_id=unk_id if unk_id >= 0 else None, byte_fallback=False))
        charsmap = proto.normalizer_spec.precompiled_charsmap
        if charsmap:
            backend.normalizer = normalizers.Precompiled(charsmap)
        set_t5_pipeline(backend)
        # user-defined (4) pieces are matched as added tokens; control (3) pieces are also special
        added = [AddedToken(p.piece, normalized=False, special=p.type == 3) for p in proto.pieces
                 if p.type in (3, 4)]
        if added:
            backend.add_tokens(added)
    controls = [p.piece for p in proto.pieces if p.type == 3]
    return backend, controls


def set_t5_pipeline(backend: Backend) -> None:
    """Pre-tokenizer and decoder exactly as transformers' T5Tokenizer sets them."""
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)


def t5_post_processor(eos: str, eos_id: int) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, eos_id)]
    )


def apply_family_flags(backend: Backend, family: Family, config: dict) -> None:
    """The family flags tokenizer_config.json (or the caller) sets, applied over a tokenizer.json that says
    otherwise: transformers rebuilds these parts of a family's pipeline from the flags, so the flags win."""
    if family in (GPT2, ROBERTA, QWEN2, GPT_NEOX) and config.get("add_prefix_space") is not None:
        pre = backend_component(backend, "pre_tokenizer") or {}
        if pre.get("type") == "ByteLevel" and pre.get("add_prefix_space") != config["add_prefix_space"]:
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(config["add_prefix_space"]))
    flags = ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
    if family is BERT and any(key in config for key in flags):
        norm = backend_component(backend, "normalizer") or {}
        if norm.get("type") == "BertNormalizer":
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=bool(norm.get("clean_text", True)),
                handle_chinese_chars=bool(config.get("tokenize_chinese_chars", norm.get("handle_chinese_chars"))),
                strip_accents=config["strip_accents"] if "strip_accents" in config else norm.get("strip_accents"),
                lowercase=bool(config.get("do_lower_case", norm.get("lowercase"))))


def backend_component(backend: Backend, part: str) -> dict | None:
    """One part ("normalizer", "pre_tokenizer", "model", ...) of a backend, as its JSON dict."""
    return json.loads(backend.to_str()).get(part)
