"""Tiny checkpoints (saved by transformers, with real tokenizers from the test assets), small local data sets, an
offline Hugging Face cache, and `evaluate`-style metric objects, for the Trainer recipe and lab tests.

`evaluate` is not a test dependency; `Rouge`, `Accuracy` and `Seqeval` give the part of its interface the
recipes call (`.compute(predictions=..., references=...)`), on rouge-score, numpy and seqeval.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from conftest import asset

WORDS = ("the cat dog bird fish tree house river mountain city road car train boat window door garden "
         "table chair lamp book paper pen music song dance film story game ball team friend family").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_dialogsum(path: Path, n: int, rng: random.Random) -> None:
    """A DialogSum-shaped CSV (id, dialogue, summary, topic) of `n` made-up dialogues of four turns."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dialogue", "summary", "topic"])
        for i in range(n):
            turns = "\n".join(f"#Person{1 + t % 2}#: {sentence(rng, rng.randint(4, 9))}." for t in range(4))
            writer.writerow([f"{path.stem}_{i}", turns, f"#Person1# talks about {sentence(rng, 3)}.", "chat"])


def _tiny(config_class, model_class, folder: Path, tokenizer, **sizes) -> str:
    torch.manual_seed(0)
    model_class(config_class(**sizes)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_bert(folder: Path, head: str = "BertForSequenceClassification", **config) -> str:
    """A 2-layer BERT (hidden 32) with bert-base-uncased's WordPiece tokenizer (all-MiniLM-L6-v2's files); the
    head is a transformers class name (BertForMaskedLM, BertForTokenClassification, ...)."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(asset("all-MiniLM-L6-v2"))
    sizes = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=512, **config)
    return _tiny(transformers.BertConfig, getattr(transformers, head), folder, tokenizer, **sizes)


def tiny_gpt2(folder: Path) -> str:
    """A 2-layer GPT-2 (n_embd 32, 128 positions) with GPT-2's own byte-level BPE tokenizer."""
    import transformers

    files = asset("gpt2-tokenizer")
    tokenizer = transformers.GPT2TokenizerFast(str(files / "vocab.json"), str(files / "merges.txt"))
    return _tiny(transformers.GPT2Config, transformers.GPT2LMHeadModel, folder, tokenizer, vocab_size=len(tokenizer),
                 n_positions=128, n_embd=32, n_layer=2, n_head=2)


def tiny_t5(folder: Path) -> str:
    """A T5 v1.1 (flan-T5's layout: gated GELU, untied head), 2 layers of d_model 32, with a 1000-piece unigram
    sentencepiece vocabulary (+100 sentinels) as spiece.model, as the t5 / flan-t5 checkpoints ship it."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(asset("spm-tokenizer/spiece.model"), folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 100,
                                                              "model_max_length": 512}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
        decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id)).save_pretrained(folder)
    return str(folder)


def hub_cache(root: Path, repo_id: str, folder: str, commit: str = "c" * 40) -> Path:
    """Lay `folder` out in the Hugging Face cache under `repo_id` (models--org--name/snapshots/<commit>)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return root


def course_lab(tmp_path: Path, monkeypatch, rows: tuple[int, int, int] = (300, 200, 250),
               writer=write_dialogsum) -> dict[str, str]:
    """The course labs' world: flan-t5-base (tiny_t5) in an offline Hugging Face cache (HF_HUB_CACHE), DialogSum
    as local CSVs written by `writer` (train, validation, test `rows`; by default 300, 200, 250: the labs read test
    rows up to index 200), the notebook's folder as cwd. Returns the CSV files by split, as
    `load_dataset("csv", data_files=...)` takes them."""
    cache = hub_cache(tmp_path / "hub", "google/flan-t5-base", tiny_t5(tmp_path / "tiny-flan-t5"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    rng = random.Random(0)
    files = {}
    for split, n in zip(("train", "validation", "test"), rows, strict=True):
        files[split] = str(tmp_path / f"{split}.csv")
        writer(tmp_path / f"{split}.csv", n, rng)
    monkeypatch.chdir(tmp_path)
    return files


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


class Rouge:
    """evaluate.load("rouge"): mean F-measures of rouge1 / rouge2 / rougeL / rougeLsum."""

    def compute(self, predictions, references, use_stemmer: bool = False, use_aggregator: bool = True):
        from rouge_score import rouge_scorer

        kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=use_stemmer)
        scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
        per_kind = {k: [s[k].fmeasure for s in scores] for k in kinds}
        return {k: float(np.mean(v)) for k, v in per_kind.items()} if use_aggregator else per_kind


class Accuracy:
    def compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


class Seqeval:
    def compute(self, predictions, references):
        from seqeval import metrics

        return {"overall_precision": metrics.precision_score(references, predictions),
                "overall_recall": metrics.recall_score(references, predictions),
                "overall_f1": metrics.f1_score(references, predictions),
                "overall_accuracy": metrics.accuracy_score(references, predictions)}
