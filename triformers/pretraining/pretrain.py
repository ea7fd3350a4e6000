"""Pre-train any family from scratch: tokenizer, model, objective and data chosen by the dialect's recipe.

Documents are joined with the tokenizer's separator (`[SEP]` / EOS) and cut into fixed blocks (see
`triformers.pretraining.corpus.PackedBlocks`). The output folder is a Hugging Face checkpoint (config.json,
model.safetensors, tokenizer files) that triformers' Auto classes and `transformers` both load. Any
registered dialect whose `recipe` is set is pre-trainable (see `recipes.py`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..auto import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
from ..dialects import get_dialect
from ..errors import ConfigError
from ..tokenization import AutoTokenizer
from ..training import Trainer, TrainingArguments, TrainResult, check_fields, init_distributed, option
from .corpus import PackedBlocks, data_files, default_corpus, iter_documents, split_documents, tokenize_corpus
from .recipes import (DEFAULT_FAMILY, build_config, build_objective, recipe_of, resolve_dialect, size_of,
                      train_family_tokenizer)
from .sizes import ModelSize

logger = logging.getLogger("triformers")

AUTO_CLASSES = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM,
                "encoder-decoder": AutoModelForSeq2SeqLM}


def pretraining_arguments() -> TrainingArguments:
    """`triformers pretrain`'s training defaults: transformers' TrainingArguments except where noted here."""
    return TrainingArguments(
        output_dir="out", max_steps=1000, per_device_train_batch_size=16, per_device_eval_batch_size=16,
        learning_rate=5e-4, weight_decay=0.01, adam_beta2=0.98,  # RoBERTa's beta2 for pre-training from scratch
        lr_scheduler_type="cosine", min_lr_ratio=0.1, warmup_steps=0.05, logging_steps=1,
        eval_strategy="steps", eval_steps=0.1, max_eval_batches=16, save_total_limit=2,
        warmup_from_first_step=True, embedding_weight_decay=False)  # triformers' choices: see TrainingArguments


@dataclass
class PretrainOptions:
    """What `triformers pretrain` does; its flags are generated from these fields, so `pretrain()`,
    `pretrain(PretrainOptions())` and `triformers pretrain` with no flags train the same run."""

    family: Literal["encoder", "decoder", "encoder-decoder"] | None = option(
        None, "pre-train the family's first dialect: bert (MLM), gpt2 (CLM) or t5 (span corruption); with "
        f"neither this nor --dialect: {DEFAULT_FAMILY}")
    dialect: str | None = option(None, "a registered dialect with a pre-training recipe: bert | roberta | gpt2 | "
                                 "bloom | t5 | bart, or your own")
    data: str | None = option(None, "text / .jsonl file or folder (None: the Python stdlib docstrings)")
    tokenizer: str | None = option(None, "a tokenizer folder (None: train one of the dialect's kind)")
    vocab_size: int = option(8000, "vocabulary of the trained tokenizer", minimum=1)
    max_docs: int | None = option(None, "read at most this many documents", minimum=1)
    document_per: Literal["line", "paragraph", "file"] = option("line", "what a document is in plain-text files")
    eval_fraction: float = option(0.02, "share of documents held out, evaluated per training.eval_strategy "
                                  "(0: nothing is held out or evaluated)")
    cache_dir: str | None = option(None, "token cache and default corpus (None: beside the data, or "
                                   "~/.cache/triformers)")
    size: ModelSize = option(help="model size", factory=ModelSize)
    training: TrainingArguments = option(help="training", factory=pretraining_arguments)

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"PretrainOptions: eval_fraction={self.eval_fraction} must be in [0, 1)")


def prepare(options: PretrainOptions, is_main: bool = True):
    """(dialect, tokenizer, model, objective, train blocks, eval blocks)."""
    dialect = resolve_dialect(options.family, options.dialect)
    size = size_of(dialect, options.size)
    out, seq_len = Path(options.training.output_dir), size.seq_len
    files = data_files(options.data) if options.data else [default_corpus(options.cache_dir, options.max_docs)]
    if options.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(options.tokenizer)
    elif (out / "tokenizer.json").is_file() and (options.training.resume_from_checkpoint or not is_main):
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
    config = build_config(dialect, tokenizer, size)
    model = AUTO_CLASSES[get_dialect(dialect).family].from_config(config)
    return dialect, tokenizer, model, objective, blocks[0], blocks[1]


def pretrain(options: PretrainOptions | None = None) -> TrainResult:
    """Build everything for `options` (default: PretrainOptions()) and train; the output folder ends as a
    Hugging Face checkpoint."""
    options = PretrainOptions() if options is None else options
    dist = init_distributed(options.training.device)
    torch.manual_seed(options.training.seed)  # the same initial weights for the same seed (DDP broadcasts rank 0's)
    if dist.world_size > 1 and not dist.is_main:
        dist.barrier()  # rank 0 trains the tokenizer and fills the token cache first
    dialect, tokenizer, model, objective, train_blocks, eval_blocks = prepare(options, dist.is_main)
    if dist.world_size > 1 and dist.is_main:
        dist.barrier()
    logger.info("pre-training %s (%.2fM parameters) with %s on %d training / %d held-out blocks of %d tokens",
                dialect, model.num_parameters() / 1e6, objective.name, len(train_blocks), len(eval_blocks),
                size_of(dialect, options.size).seq_len)

    def export(trained, folder: Path) -> None:
        trained.save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))

    args = options.training
    if not len(eval_blocks) and args.eval_strategy != "no":
        if options.eval_fraction:
            raise ConfigError(f"the held-out split (eval_fraction={options.eval_fraction}) is shorter than one "
                              "block: hold out more, or set training.eval_strategy='no' (--eval-strategy no)")
        args = dataclasses.replace(args, eval_strategy="no")  # nothing held out: nothing to evaluate
    trainer = Trainer(model, args, train_dataset=train_blocks, data_collator=objective.collator,
                      eval_dataset=eval_blocks if len(eval_blocks) else None, export=export)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    return trainer.result
