"""CLI verbs that train: `triformers pretrain` (any family from scratch) and `triformers finetune` (a task).

    triformers pretrain --family decoder --steps 200 --out runs/gpt       # stdlib docstring corpus
    triformers pretrain --dialect t5 --data corpus/ --layers 4 --hidden-size 256 --bf16 --out runs/t5
    triformers pretrain --dialect t5 --data corpus/ --out runs/t5 --resume  # continue from the last checkpoint
    torchrun --nproc_per_node=4 -m triformers pretrain --family encoder --data corpus/ --out runs/bert
    triformers finetune --task text-classification --model bert-dir --train train.csv --eval test.csv --out sst
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..finetuning import TASKS, FinetuneOptions, finetune
from ..pretraining import ModelSize, PretrainOptions, pretrain
from .flags import add_trainer_arguments, trainer_arguments
from .registry import Command, register


# ---- pretrain ------------------------------------------------------------------------------------------
def _pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to train")
    choice = what.add_mutually_exclusive_group(required=True)
    choice.add_argument("--family", choices=["encoder", "decoder", "encoder-decoder"],
                        help="bert (MLM), gpt2 (CLM) or t5 (span corruption)")
    choice.add_argument("--dialect", help="bert | roberta | gpt2 | bloom | t5 | bart (any registered dialect)")
    what.add_argument("--data", help="text / .jsonl file or folder (default: Python stdlib docstrings)")
    what.add_argument("--tokenizer", help="tokenizer folder (default: train one of the dialect's kind)")
    what.add_argument("--vocab-size", type=int, default=8000)
    what.add_argument("--max-docs", type=int, help="read at most this many documents")
    what.add_argument("--document-per", choices=["line", "paragraph", "file"], default="line",
                      help="what a document is in plain-text files (default: line)")
    what.add_argument("--eval-fraction", type=float, default=0.02, help="share of documents held out")
    what.add_argument("--cache-dir", help="where the token cache and default corpus go")
    size = parser.add_argument_group("model size")
    size.add_argument("--hidden-size", type=int, default=256)
    size.add_argument("--layers", type=int, default=4)
    size.add_argument("--heads", type=int, default=4)
    size.add_argument("--intermediate-size", type=int, help="default: 4 * hidden size")
    size.add_argument("--seq-len", "--max-length", dest="seq_len", type=int, default=128)
    size.add_argument("--dropout", type=float, help="default: the dialect's")
    loop = parser.add_argument_group("training")
    loop.add_argument("--out", default="out", help="output folder (a Hugging Face checkpoint at the end)")
    loop.add_argument("--steps", type=int, default=1000)
    loop.add_argument("--lr", type=float, default=5e-4)
    loop.add_argument("--warmup", type=int, default=None, help="warmup steps (default: 5%% of --steps)")
    loop.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    loop.add_argument("--min-lr-ratio", type=float, default=0.1)
    loop.add_argument("--fsdp", action="store_true",
                      help="under torchrun: shard the model, gradients and optimizer state (FSDP) instead of DDP")
    add_trainer_arguments(loop, log_every=1)


def pretrain_options(args: argparse.Namespace) -> PretrainOptions:
    """The parsed flags as `PretrainOptions` (typed dataclasses, validated by the library)."""
    training = trainer_arguments(
        args, max_steps=args.steps, warmup_steps=args.warmup if args.warmup is not None else args.steps // 20,
        min_lr_ratio=args.min_lr_ratio, fsdp=args.fsdp)
    size = ModelSize(hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
                     intermediate_size=args.intermediate_size, seq_len=args.seq_len, dropout=args.dropout)
    return PretrainOptions(family=args.family, dialect=args.dialect, data=args.data, tokenizer=args.tokenizer,
                           vocab_size=args.vocab_size, max_docs=args.max_docs, document_per=args.document_per,
                           eval_fraction=args.eval_fraction, cache_dir=args.cache_dir, size=size, training=training)


def _run_pretrain(args: argparse.Namespace) -> int:
    result = pretrain(pretrain_options(args))
    summary = f"done: {result.step} steps, {result.tokens} tokens in {result.seconds:.1f}s, last loss {result.loss:.4f}"
    if result.eval_loss is not None:
        summary += f", held-out loss {result.eval_loss:.4f} (perplexity {result.eval_perplexity:.1f})"
    print(f"{summary}; checkpoint in {args.out}")
    return 0


register(Command("pretrain", "pre-train a model of any family from scratch", _pretrain_arguments, _run_pretrain))


# ---- finetune ---------------------------------------------------------------------------------------
def _finetune_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("task and data")
    what.add_argument("--task", required=True, choices=sorted(TASKS))
    what.add_argument("--model", required=True, help="pre-trained model folder or hub id (with its tokenizer)")
    what.add_argument("--train", required=True, help="training file (.csv, .tsv, .jsonl, SQuAD .json)")
    what.add_argument("--eval", help="held-out file in the same format (metrics, held-out loss)")
    what.add_argument("--labels", help="label names in id order, comma-separated or a file with one per line")
    what.add_argument("--max-length", type=int, default=128, help="tokens per input (QA: per window)")
    what.add_argument("--doc-stride", type=int, default=64, help="QA: tokens shared by neighbouring windows")
    what.add_argument("--source-prefix", default="", help='seq2seq: put before every source (T5: "summarize: ")')
    what.add_argument("--max-target-length", type=int, default=64, help="seq2seq: target / generated tokens")
    what.add_argument("--num-beams", type=int, default=1, help="seq2seq: beam width at evaluation")
    loop = parser.add_argument_group("training")
    loop.add_argument("--out", default="finetuned", help="output folder (a Hugging Face checkpoint at the end)")
    length = loop.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=3.0, help="passes over the training data (default 3)")
    length.add_argument("--steps", type=int, help="optimizer steps (instead of --epochs)")
    loop.add_argument("--eval-batch-size", type=int, default=32)
    loop.add_argument("--no-group-by-length", action="store_true",
                      help="draw every batch at random (default: batches of similar lengths, less padding)")
    loop.add_argument("--lr", type=float, default=5e-5)
    loop.add_argument("--warmup", type=float, default=0.1,
                      help="warmup: a fraction of the steps if below 1, else a number of steps (default 0.1)")
    loop.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear")
    add_trainer_arguments(loop, log_every=10)


def _labels(value: str | None) -> list[str] | None:
    if not value:
        return None
    path = Path(value)
    names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else value.split(",")
    return [name.strip() for name in names if name.strip()]


def options_from_args(args: argparse.Namespace) -> FinetuneOptions:
    """The parsed flags as `FinetuneOptions` (warmup as a fraction is resolved once the steps are known)."""
    training = trainer_arguments(args, max_steps=args.steps or 1, betas=(0.9, 0.999))
    return FinetuneOptions(
        task=args.task, model=args.model, train=args.train, eval=args.eval,
        epochs=None if args.steps else args.epochs, warmup=args.warmup, max_length=args.max_length,
        labels=_labels(args.labels), doc_stride=args.doc_stride, source_prefix=args.source_prefix,
        max_target_length=args.max_target_length, num_beams=args.num_beams, eval_batch_size=args.eval_batch_size,
        group_by_length=not args.no_group_by_length, training=training)


def _run_finetune(args: argparse.Namespace) -> int:
    result = finetune(options_from_args(args))
    run = result.training
    print(f"done: {run.step} steps in {run.seconds:.1f}s, last loss {run.loss:.4f}; model in {args.out}")
    for name, value in result.metrics.items():
        print(f"  {name}: {value:.4f}")
    return 0




register(Command("finetune", "fine-tune a model: text / token classification, extractive QA, seq2seq",
                 _finetune_arguments, _run_finetune))
