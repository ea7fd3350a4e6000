"""The Trainer side by side with transformers' (the oracle): the same tiny checkpoint, data, order and
TrainingArguments give the same losses, learning rates, gradient norms, epochs, evaluation loss, predictions and
log-record shapes.

Tolerance 1e-4 on losses: both run fused AdamW on the same fp32 weights, but the models are different code
(fused q|k|v, another summation order), so the losses drift apart by float rounding (~1e-6 here), far below a
difference in the recipe (a warmup or accumulation mistake moves the loss by 1e-3 or more). Dropout is off and
both read the data in order (`train_sampling_strategy="sequential"`): transformers shuffles with torch's global
RNG, triformers with its own (seed, epoch) permutation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from triformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: E402
from triformers import Trainer, TrainingArguments  # noqa: E402

TOLERANCE = 1e-4
COMMON = dict(learning_rate=1e-3, weight_decay=0.01, warmup_steps=2, max_steps=5, logging_steps=1, seed=0,
              train_sampling_strategy="sequential", save_strategy="no", report_to="none", disable_tqdm=True,
              per_device_eval_batch_size=4)


def padded_examples(n: int, vocab: int, seed: int, label: str | None = None) -> list[dict]:
    """Rows of 5-16 random ids padded to 16 (labels -100 on padding, or a class label)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        length = int(rng.integers(5, 17))
        ids = rng.integers(3, vocab, size=length).tolist() + [0] * (16 - length)
        row = {"input_ids": ids, "attention_mask": [1] * length + [0] * (16 - length)}
        row.update({"labels": ids[:length] + [-100] * (16 - length)} if label is None else {label: int(ids[0] % 3)})
        rows.append(row)
    return rows


def both_trainers(folder, triformers_class, transformers_class, train, evaluation=None, **changes):
    """(triformers Trainer, transformers Trainer) on the checkpoint in `folder`, with the same arguments."""
    settings = {**COMMON, **changes}
    ours = Trainer(model=triformers_class.from_pretrained(folder), train_dataset=train, eval_dataset=evaluation,
                   args=TrainingArguments(output_dir=str(folder / "ours"), plot_loss=False, **settings),
                   compute_metrics=accuracy if evaluation else None)
    theirs = transformers.Trainer(model=transformers_class.from_pretrained(folder), train_dataset=train,
                                  eval_dataset=evaluation, compute_metrics=accuracy if evaluation else None,
                                  args=transformers.TrainingArguments(output_dir=str(folder / "theirs"), **settings))
    return ours, theirs


def accuracy(prediction):
    logits, labels = prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def training_records(trainer) -> list[dict]:
    return [r for r in trainer.state.log_history if "loss" in r]


def assert_same_run(ours, theirs) -> list[tuple[float, float]]:
    mine, oracle = training_records(ours), training_records(theirs)
    assert [sorted(r) for r in mine] == [sorted(r) for r in oracle]  # {loss, grad_norm, learning_rate, epoch, step}
    assert [r["learning_rate"] for r in mine] == pytest.approx([r["learning_rate"] for r in oracle], rel=1e-12)
    assert mine[0]["learning_rate"] == 0.0  # transformers' warmup: the first step has lr 0
    assert [r["epoch"] for r in mine] == pytest.approx([r["epoch"] for r in oracle])
    assert [r["grad_norm"] for r in mine] == pytest.approx([r["grad_norm"] for r in oracle], rel=1e-4)
    pairs = [(a["loss"], b["loss"]) for a, b in zip(mine, oracle, strict=True)]
    assert max(abs(a - b) for a, b in pairs) < TOLERANCE, pairs
    summary, oracle_summary = ours.state.log_history[-1], theirs.state.log_history[-1]
    assert sorted(summary) == sorted(oracle_summary)  # train_runtime ... total_flos, train_loss, epoch, step
    assert summary["train_loss"] == pytest.approx(oracle_summary["train_loss"], abs=TOLERANCE)
    assert summary["total_flos"] == oracle_summary["total_flos"]
    return pairs


def test_gpt2_with_accumulation_matches_transformers(tmp_path, capsys):
    """Accumulation over rows of different lengths: transformers normalises the loss over the label tokens of the
    whole accumulated batch (num_items_in_batch); so does triformers."""
    config = transformers.GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    ours, theirs = both_trainers(tmp_path, AutoModelForCausalLM, transformers.GPT2LMHeadModel,
                                 padded_examples(48, 96, seed=1), per_device_train_batch_size=4,
                                 gradient_accumulation_steps=2)
    result, oracle = ours.train(), theirs.train()
    assert result.global_step == oracle.global_step == 5
    pairs = assert_same_run(ours, theirs)
    with capsys.disabled():
        print("\nGPT-2 (accumulation 2) losses, triformers vs transformers:",
              " ".join(f"{a:.6f}/{b:.6f}" for a, b in pairs))


def test_bert_classifier_train_evaluate_predict_match_transformers(tmp_path, capsys):
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path)
    evaluation = padded_examples(10, 64, seed=3, label="label")  # 4 + 4 + 2: the last batch is smaller
    train = padded_examples(40, 64, seed=2, label="label")
    ours, theirs = both_trainers(tmp_path, AutoModelForSequenceClassification,
                                 transformers.BertForSequenceClassification, train, evaluation,
                                 per_device_train_batch_size=4)
    ours.train()
    theirs.train()
    pairs = assert_same_run(ours, theirs)
    mine, oracle = ours.evaluate(), theirs.evaluate()
    assert sorted(mine) == sorted(oracle)  # eval_loss, eval_accuracy, eval_runtime, ..., epoch
    assert mine["eval_loss"] == pytest.approx(oracle["eval_loss"], abs=TOLERANCE)
    assert mine["eval_accuracy"] == oracle["eval_accuracy"] and mine["epoch"] == oracle["epoch"]
    predicted, expected = ours.predict(evaluation), theirs.predict(evaluation)
    assert predicted.predictions.shape == expected.predictions.shape == (10, 3)
    np.testing.assert_allclose(predicted.predictions, expected.predictions, atol=1e-4)
    np.testing.assert_array_equal(predicted.label_ids, expected.label_ids)
    assert sorted(predicted.metrics) == sorted(expected.metrics)  # test_loss, test_accuracy, test_runtime, ...
    with capsys.disabled():
        print("\nBERT classifier losses, triformers vs transformers:", " ".join(f"{a:.6f}/{b:.6f}" for a, b in pairs),
              f"; eval_loss {mine['eval_loss']:.6f}/{oracle['eval_loss']:.6f}")
