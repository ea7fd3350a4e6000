"""Fine-tune the real all-MiniLM-L6-v2 for binary sentiment on VADER's human-rated movie snippets.

Data: `movieReviewSnippets_GroundTruth.txt` from the vaderSentiment 3.3.2 sdist (Hutto & Gilbert,
ICWSM 2014): tab-separated id, mean human rating (-4..4), text; 10,605 snippets of Rotten Tomatoes
reviews. A snippet is positive when its mean rating is > 0.5, negative when < -0.5; the rest are
dropped as neither. The split is fixed: the kept snippets are shuffled by `numpy.random.default_rng(0)`
in file order and the first 20% are the held-out test set. `--limit N` keeps the first N of each split
(a quick run). The training goes through `triformers.finetuning` (the `triformers finetune` command), so
the output folder is a text-classification checkpoint with id2label {0: negative, 1: positive}:

    python examples/sentiment.py --out runs/sentiment                 # the full run (README figures)
    python examples/sentiment.py --limit 300 --epochs 1 --out /tmp/s  # about a minute
    triformers classify --model runs/sentiment "a gorgeous, witty, seductive movie"

The full run trains on 8,034 snippets and tests on 2,009, 2 epochs of batches of 32; README.md gives
the accuracy and time it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from triformers.finetuning import FinetuneOptions, finetune, finetuning_arguments

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / ".assets" / "all-MiniLM-L6-v2"
SNIPPETS = ROOT / ".assets" / "vader" / "movieReviewSnippets_GroundTruth.txt"
THRESHOLD = 0.5  # |mean rating| must exceed this for a snippet to count as positive / negative
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_snippets(path: Path = SNIPPETS) -> list[dict]:
    """{"text", "label"} for every snippet clearly positive or negative, in file order."""
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        rating, text = float(parts[1]), "\t".join(parts[2:]).strip()
        if abs(rating) > THRESHOLD and text:
            kept.append({"text": text, "label": "positive" if rating > 0 else "negative"})
    return kept


def split(records: list[dict], limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """The fixed split: a seeded shuffle, the first 20% held out; optionally the first `limit` of each."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(records))
    n_test = round(TEST_FRACTION * len(records))
    test, train = [records[i] for i in order[:n_test]], [records[i] for i in order[n_test:]]
    return (train[:limit], test[:limit]) if limit else (train, test)


def write_jsonl(records: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def run(out: str, limit: int | None = None, epochs: float = 2.0, lr: float = 2e-4, batch_size: int = 32,
        max_length: int = 64, seed: int = 0, bf16: bool = True, progress: bool = True, model: Path = MODEL,
        snippets: Path = SNIPPETS) -> dict:
    """Fine-tune and evaluate; returns the held-out metrics with the split sizes and the wall time."""
    started = time.perf_counter()
    train, test = split(load_snippets(snippets), limit)
    folder = Path(out)
    # the finetune command's defaults (linear decay after a 10% warmup, weight decay 0.01, evaluation every
    # epoch, batches grouped by length) with this run's rate, batch and epochs; no intermediate checkpoints
    training = dataclasses.replace(finetuning_arguments(), output_dir=out, learning_rate=lr,
                                   per_device_train_batch_size=batch_size, num_train_epochs=epochs, seed=seed,
                                   save_strategy="no", overwrite_output_dir=True, bf16=bf16, disable_tqdm=not progress)
    options = FinetuneOptions(
        task="text-classification", model=str(model), train=write_jsonl(train, folder / "data" / "train.jsonl"),
        eval=write_jsonl(test, folder / "data" / "test.jsonl"), max_length=max_length,
        labels=["negative", "positive"], training=training)
    metrics = finetune(options).metrics
    return {**metrics, "train": len(train), "test": len(test), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/sentiment", help="output folder (checkpoint, data, metrics)")
    parser.add_argument("--limit", type=int, help="use only the first N training and N test snippets")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per snippet (longer ones are cut)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice; 1 on a busy machine)")
    parser.add_argument("--fp32", action="store_true", help="no bfloat16 autocast (it is used where the CPU has it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.out, args.limit, args.epochs, args.lr, args.batch_size, args.max_length, bf16=not args.fp32)
    print(f"held-out accuracy {result['accuracy']:.4f} (macro-F1 {result['macro_f1']:.4f}) on {result['test']} "
          f"snippets, trained on {result['train']}; wall time {result['seconds']:.0f}s "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
