"""`triformers finetune --lora`: the adapter folder (peft's layout) reloads with PeftModel.from_pretrained in
triformers and in the real peft over transformers with the trained model's logits (atol 1e-5), `--merge-lora`'s
folder with the Auto classes and the pipelines, and the new head trains with the adapter; bad specs are refused."""

from __future__ import annotations

import json
import random

import pytest
import torch
from test_finetune import fast, sentiment_rows, tiny_checkpoint, write_jsonl

from triformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline
from triformers.cli import main as cli_main
from triformers.finetuning import FinetuneOptions, finetune
from triformers.finetuning.data import FinetuneError
from triformers.finetuning.options import lora_config
from triformers.peft import PeftModel

FLAGS = ["--no-progress", "--no-plot", "--batch-size", "16", "--lr", "3e-3"]


def test_lora_specs_parse_as_peft_fields():
    config = lora_config("r=16,alpha=32,targets=q,v", "seq2seq")
    assert (config.r, config.lora_alpha, config.target_modules, config.task_type) == (16, 32, {"q", "v"},
                                                                                        "SEQ_2_SEQ_LM")
    config = lora_config("r=4, dropout=0.05, targets=all-linear, bias=lora_only", "text-classification")
    assert (config.lora_dropout, config.target_modules, config.bias, config.task_type) == (
        0.05, "all-linear", "lora_only", "SEQ_CLS")
    assert lora_config("r=8", "seq2seq").target_modules is None  # the dialect's default, as peft
    for spec, message in (("rank=8", "unknown key 'rank'"), ("r=8,q", "not key=value"), ("r=x", "r=x"),
                          ("r=8,r=4", "given twice"), ("r=8,bias=some", "bias")):
        with pytest.raises(FinetuneError, match=message):
            lora_config(spec, "seq2seq")
    with pytest.raises(FinetuneError, match="merge_lora needs lora"):
        FinetuneOptions("seq2seq", "m", "t.jsonl", merge_lora=True)


def test_seq2seq_lora_cli_writes_an_adapter_peft_reads_and_a_merged_model(tmp_path):
    model_dir = tiny_checkpoint(tmp_path / "tiny-t5", "t5", "unigram")
    rng = random.Random(3)
    rows = [{"source": " ".join(words), "target": " ".join(sorted(words))}
            for words in (rng.sample(["cat", "dog", "sun", "tree", "car", "book"], 3) for _ in range(64))]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    assert cli_main(["finetune", "--task", "seq2seq", "--model", model_dir, "--train", train, "--out", str(out),
                     "--source-prefix", "sort: ", "--max-target-length", "8", "--steps", "30",
                     "--lora", "r=8,alpha=16,targets=q,v,wo", "--merge-lora", *FLAGS]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"]), config["task_type"]) == (
        8, 16, ["q", "v", "wo"], "SEQ_2_SEQ_LM")
    assert not (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    checkpoints = list((out / "checkpoints").glob("checkpoint-*/model.safetensors"))
    assert not checkpoints  # checkpoints hold the adapter, not the model
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[-1] < losses[0] - 0.5, losses  # the adapter learns

    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["sort: " + r["source"] for r in rows[:4]], padding=True, return_tensors="pt")
    labels = tokenizer([r["target"] for r in rows[:4]], padding=True, return_tensors="pt")["input_ids"]
    base = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    with torch.no_grad():
        plain = base(**batch, labels=labels).logits
        adapted = PeftModel.from_pretrained(base, out, is_trainable=False)(**batch, labels=labels).logits
        merged = AutoModelForSeq2SeqLM.from_pretrained(out / "merged")(**batch, labels=labels).logits
    assert (adapted - plain).abs().max() > 1e-2
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-6)  # merging reorders the sums
    generator = pipeline("text2text-generation", model=str(out / "merged"), max_new_tokens=8)
    assert isinstance(generator("sort: dog cat sun")[0]["generated_text"], str)

    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(model_dir)
    theirs = peft.PeftModel.from_pretrained(hf, out).eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(**batch, labels=labels).logits, adapted, atol=1e-5, rtol=0)


def test_classification_lora_trains_the_new_head_with_the_adapter(tmp_path):
    """The random tiny BERT is no pre-trained model, so the adapter learns the toy set more slowly than a full
    fine-tune does (lr 1e-2, 120 steps for ~0.85 held-out accuracy where the full one reaches 1.0 in 60)."""
    tiny_bert = tiny_checkpoint(tmp_path / "tiny-bert", "bert", "wordpiece")
    rng = random.Random(0)
    for name, n in (("train", 96), ("eval", 32)):
        lines = ["text,label"] + [f"{r['text']},{r['label']}" for r in sentiment_rows(n, rng)]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = finetune(FinetuneOptions("text-classification", tiny_bert, str(tmp_path / "train.csv"),
                                      str(tmp_path / "eval.csv"), lora="r=8,alpha=16,targets=query,value",
                                      training=fast(out, 120, lr=1e-2)))
    assert result.metrics["accuracy"] >= 0.75, result.metrics
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "classifier" in config["modules_to_save"]
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, id2label={0: "neg", 1: "pos"})
    model = PeftModel.from_pretrained(base, out)
    batch = AutoTokenizer.from_pretrained(out)(["the movie was superb", "it is an awful film"], padding=True,
                                               return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, result.model.eval()(**batch).logits, atol=1e-5, rtol=0)
        with model.disable_adapter():  # the trained head is the adapter's copy: the base's is still random
            assert (model(**batch).logits - result.model(**batch).logits).abs().max() > 1e-3
