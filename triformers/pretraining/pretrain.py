"""Pre-train any family from scratch: tokenizer, model, objective and data chosen by the dialect's recipe.

Documents are joined with the tokenizer's separator (`[SEP]` / EOS) and cut into fixed blocks (see
`triformers.pretraining.corpus.PackedBlocks`). The output folder is a Hugging Face checkpoint (config.json,
model.safetensors, tokenizer files) that triformers' Auto classes and `transformers` both load. Any
registered dialect whose `recipe` is set is pre-trainable (see `recipes.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..auto import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
from ..dialects import get_dialect
from ..tokenization import AutoTokenizer
from ..training import Trainer, TrainingArguments, TrainResult, init_distributed
from .corpus import PackedBlocks, data_files, default_corpus, iter_documents, split_documents, tokenize_corpus
from .recipes import build_config, build_objective, recipe_of, resolve_dialect, train_family_tokenizer
from .sizes import ModelSize

logger = logging.getLogger("triformers")

AUTO_CLASSES = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM,
                "encoder-decoder": AutoModelForSeq2SeqLM}


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
        logger.info("training a %s tokenizer (vocab %d)", recipe_of(dialect).tokenizer, options.vocab_size)
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
