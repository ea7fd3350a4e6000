"""Pre-train any family from scratch: tokenizer, model, objective and data chosen per checkpoint dialect.

| dialect | family | tokenizer trained | objective (collator) | example |
|---|---|---|---|---|
| bert | encoder | WordPiece | MLM 15%, 80/10/10 (`MLMCollator`) | `[CLS] block [SEP]` |
| roberta | encoder | byte-level BPE, `<s> <pad> </s> <unk> <mask>` | MLM | `<s> block </s>` |
| gpt2, bloom | decoder | byte-level BPE, `<|endoftext|>` | CLM, packed (`CLMCollator`) | block |
| t5 | encoder-decoder | Unigram + 100 sentinels | span corruption (`SpanCorruptionCollator`) | raw chunk |
| bart | encoder-decoder | byte-level BPE as RoBERTa | text infilling (`TextInfillingCollator`) | `<s> block </s>` |

Documents are joined with the tokenizer's separator (`[SEP]` / EOS) and cut into fixed blocks (see
`triformers.data.PackedBlocks`). The output folder is a Hugging Face checkpoint (config.json,
model.safetensors, tokenizer files) that triformers' Auto classes and `transformers` both load.
A dialect is usable here as soon as it is registered (`triformers.dialects.DIALECTS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .auto import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
from .config import ModelConfig
from .data import PackedBlocks, data_files, default_corpus, iter_documents, split_documents, tokenize_corpus
from .dialects import DIALECTS, get_dialect
from .errors import ConfigError
from .objectives import (CLMCollator, MLMCollator, SpanCorruptionCollator, TextInfillingCollator,
                         compute_input_and_target_lengths)
from .tokenization import AutoTokenizer, Tokenizer, train_tokenizer
from .training import Trainer, TrainingArguments, TrainResult, init_distributed

logger = logging.getLogger("triformers")

FAMILY_DIALECTS = {"encoder": "bert", "decoder": "gpt2", "encoder-decoder": "t5"}
TOKENIZER_KINDS = {"bert": "wordpiece", "roberta": "roberta", "gpt2": "bpe", "bloom": "bpe", "t5": "unigram",
                   "bart": "roberta"}
OBJECTIVES = {"bert": "mlm", "roberta": "mlm", "gpt2": "clm", "bloom": "clm", "t5": "span_corruption",
              "bart": "text_infilling"}
AUTO_CLASSES = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM,
                "encoder-decoder": AutoModelForSeq2SeqLM}


@dataclass
class ModelSize:
    hidden_size: int = 256
    layers: int = 4  # encoder layers (and decoder layers of an encoder-decoder)
    heads: int = 4
    intermediate_size: int | None = None  # None: 4 * hidden_size
    seq_len: int = 128  # tokens per example (encoder inputs for encoder-decoder models)
    dropout: float | None = None  # None: the dialect's default


@dataclass
class PretrainOptions:
    """What `triformers pretrain` does; its flags parse into this."""

    family: str | None = None  # encoder | decoder | encoder-decoder (picks bert / gpt2 / t5)
    dialect: str | None = None  # bert | roberta | gpt2 | bloom | t5 | bart (any registered one)
    data: str | None = None  # file or folder; None: the Python stdlib docstring corpus
    tokenizer: str | None = None  # a tokenizer folder; None: train one of the dialect's kind
    vocab_size: int = 8000
    max_docs: int | None = None  # read at most this many documents (quick runs, tests)
    document_per: str = "line"  # line | paragraph | file: what a document is in plain-text files
    eval_fraction: float = 0.02  # documents held out for evaluation
    cache_dir: str | None = None  # token cache and default corpus; None: beside the data / ~/.cache/triformers
    size: ModelSize = field(default_factory=ModelSize)
    training: TrainingArguments = field(default_factory=TrainingArguments)


@dataclass
class Objective:
    name: str
    block_length: int  # raw stream tokens per example
    separator: int | None  # token put after every document in the stream
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    collator: Callable[[list[Any]], dict]


def resolve_dialect(family: str | None, dialect: str | None) -> str:
    """The dialect to pre-train: given, or the family's default; checked against the registry."""
    if dialect is None:
        if family not in FAMILY_DIALECTS:
            raise ConfigError(f"--family must be one of {sorted(FAMILY_DIALECTS)} (or give --dialect), got {family!r}")
        dialect = FAMILY_DIALECTS[family]
    if dialect not in OBJECTIVES:
        raise ConfigError(f"--dialect {dialect!r}: pre-training knows {sorted(OBJECTIVES)}")
    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect {dialect!r} is not registered yet; available: {sorted(DIALECTS)}")
    if family is not None and get_dialect(dialect).family != family:
        raise ConfigError(f"--dialect {dialect} is a {get_dialect(dialect).family} model, not --family {family}")
    return dialect


def train_family_tokenizer(dialect: str, texts, vocab_size: int, model_max_length: int) -> Tokenizer:
    """A new tokenizer of the dialect's kind, trained on `texts`."""
    kind = TOKENIZER_KINDS[dialect]
    if kind == "roberta":
        return _train_roberta_bpe(texts, vocab_size, model_max_length)
    return train_tokenizer(texts, kind=kind, vocab_size=vocab_size, model_max_length=model_max_length)


def _train_roberta_bpe(texts, vocab_size: int, model_max_length: int) -> Tokenizer:
    """RoBERTa / BART byte-level BPE: `<s>=0 <pad>=1 </s>=2 <unk>=3`, `<mask>` last, `<s> A </s>` template."""
    from tokenizers import AddedToken, decoders, pre_tokenizers, trainers
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import BPE

    from .tokenization import converters
    from .tokenization.loading import set_post_processor

    backend = Backend(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    # RoBERTa's <mask> is the last id and strips the space before it (lstrip), as in roberta-base
    backend.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    family = converters.ROBERTA
    tokenizer = Tokenizer(backend, family, special_tokens=dict(family.specials), model_max_length=model_max_length)
    set_post_processor(tokenizer, "roberta", {})
    return tokenizer


def build_config(dialect: str, tokenizer: Tokenizer, size: ModelSize) -> ModelConfig:
    """The dialect's default config resized, with the tokenizer's vocabulary and special ids."""
    base = get_dialect(dialect).config_from_hf({}, f"pretrain --dialect {dialect}")
    changes: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, num_layers=size.layers, num_heads=size.heads,
        intermediate_size=size.intermediate_size or 4 * size.hidden_size, head_dim=None)
    if base.num_decoder_layers is not None or get_dialect(dialect).family == "encoder-decoder":
        changes["num_decoder_layers"] = size.layers
    if base.head_dim is not None:
        changes["head_dim"] = size.hidden_size // size.heads
    if size.dropout is not None:
        changes.update(dropout=size.dropout, attention_dropout=size.dropout,
                       activation_dropout=size.dropout if base.activation_dropout else 0.0)
    if base.output_scale != 1.0:  # T5 v1.0 scales by d_model**-0.5: the new width's, as a reload computes it
        changes["output_scale"] = size.hidden_size ** -0.5
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(tokenizer, key, None) is not None:
            changes[key] = getattr(tokenizer, key)
    if dialect == "t5":
        changes["decoder_start_token_id"] = tokenizer.pad_token_id
    elif dialect == "bart":
        changes.update(decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    config = base.replace(**changes)
    if config.positions == "learned":  # a table long enough for seq_len (RoBERTa counts from pad + 1)
        extra = config.pad_token_id + 1 if config.positions_from_padding else 0
        config = config.replace(max_positions=size.seq_len + extra)
    return config


def build_objective(dialect: str, tokenizer: Tokenizer, seq_len: int) -> Objective:
    objective = OBJECTIVES[dialect]
    if objective == "mlm":
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        return Objective(objective, seq_len - 2, sep, (cls,), (sep,), MLMCollator.from_tokenizer(tokenizer))
    if objective == "clm":
        return Objective(objective, seq_len, tokenizer.eos_token_id, (), (), CLMCollator.from_tokenizer(tokenizer))
    if objective == "span_corruption":
        tokens_length, _ = compute_input_and_target_lengths(seq_len)
        collator = SpanCorruptionCollator.from_tokenizer(tokenizer, input_length=seq_len)
        return Objective(objective, tokens_length, tokenizer.eos_token_id, (), (), collator)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return Objective(objective, seq_len - 2, eos, (bos,), (eos,), TextInfillingCollator.from_tokenizer(tokenizer))


def prepare(options: PretrainOptions, is_main: bool = True):
    """(dialect, tokenizer, corpus files, model, objective, train blocks, eval blocks)."""
    dialect = resolve_dialect(options.family, options.dialect)
    out, seq_len = Path(options.training.output_dir), options.size.seq_len
    files = data_files(options.data) if options.data else [default_corpus(options.cache_dir, options.max_docs)]
    if options.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(options.tokenizer)
    elif (out / "tokenizer.json").is_file() and (options.training.resume or not is_main):
        tokenizer = AutoTokenizer.from_pretrained(str(out))  # the one this run trained before (or rank 0 just did)
    else:
        logger.info("training a %s tokenizer (vocab %d)", TOKENIZER_KINDS[dialect], options.vocab_size)
        texts = iter_documents(files, document_per=options.document_per, max_docs=options.max_docs)
        tokenizer = train_family_tokenizer(dialect, texts, options.vocab_size, seq_len)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out))
    corpus = tokenize_corpus(files, tokenizer, options.cache_dir, document_per=options.document_per,
                             max_docs=options.max_docs)
    train_ids, eval_ids = split_documents(len(corpus), options.eval_fraction, options.training.seed)
    objective = build_objective(dialect, tokenizer, seq_len)
    blocks = [PackedBlocks(corpus, ids, objective.block_length, objective.separator, objective.prefix,
                           objective.suffix) for ids in (train_ids, eval_ids)]
    config = build_config(dialect, tokenizer, options.size)
    model = AUTO_CLASSES[get_dialect(dialect).family].from_config(config)
    return dialect, tokenizer, model, objective, blocks[0], blocks[1]


def pretrain(options: PretrainOptions) -> TrainResult:
    """Build everything for `options` and train; the output folder ends as a Hugging Face checkpoint."""
    dist = init_distributed(options.training.device)
    torch.manual_seed(options.training.seed)  # the same initial weights for the same seed (DDP broadcasts rank 0's)
    if dist.world_size > 1 and not dist.is_main:
        dist.barrier()  # rank 0 trains the tokenizer and fills the token cache first
    dialect, tokenizer, model, objective, train_blocks, eval_blocks = prepare(options, dist.is_main)
    if dist.world_size > 1 and dist.is_main:
        dist.barrier()
    logger.info("pre-training %s (%.2fM parameters) with %s on %d training / %d held-out blocks of %d tokens",
                dialect, model.num_parameters() / 1e6, objective.name, len(train_blocks), len(eval_blocks),
                options.size.seq_len)

    def export(trained, folder: Path) -> None:
        trained.save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))

    trainer = Trainer(model, options.training, train_blocks, objective.collator,
                      eval_data=eval_blocks if len(eval_blocks) else None, export=export)
    return trainer.train()
