"""DPO (triformers.rl.DPOTrainer): learning on a preference task built here, for a decoder-only and an
encoder-decoder model, from a list of dicts and from a datasets.Dataset; the reference log-probabilities are
computed once; the `triformers dpo` command writes a folder that reloads through the Auto classes."""

from __future__ import annotations

import json
import random

import pytest
import torch
from trainer_assets import tiny_gpt2, tiny_t5

from triformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from triformers.rl import DPOConfig, DPOTrainer

GOOD = "yes good great fine nice".split()
BAD = "no bad awful poor sad".split()
TOPICS = "cat dog bird fish tree house river city road car".split()


def preferences(n: int, seed: int) -> list[dict[str, str]]:
    """A prompt about a topic; the chosen answer is upbeat, the rejected one glum (same topic, same length)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        rows.append({"prompt": f"tell me about the {topic}:", "chosen": f" {rng.choice(GOOD)} {topic}",
                     "rejected": f" {rng.choice(BAD)} {topic}"})
    return rows


def dpo_args(tmp_path, **overrides) -> DPOConfig:
    settings = dict(output_dir=str(tmp_path / "dpo"), beta=0.1, learning_rate=5e-3, num_train_epochs=3.0,
                    per_device_train_batch_size=8, per_device_eval_batch_size=32, logging_steps=5, save_strategy="no",
                    eval_strategy="no", report_to=[], seed=0, plot_loss=False, lr_scheduler_type="constant")
    return DPOConfig(**{**settings, **overrides})


@pytest.mark.parametrize("family", ["decoder", "encoder-decoder"])
def test_dpo_learns_preferences(tmp_path, family):
    folder = tiny_gpt2(tmp_path / "m") if family == "decoder" else tiny_t5(tmp_path / "m")
    auto = AutoModelForCausalLM if family == "decoder" else AutoModelForSeq2SeqLM
    model, tok = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    trainer = DPOTrainer(model=model, args=dpo_args(tmp_path), train_dataset=preferences(96, 0),
                         eval_dataset=preferences(64, 1), processing_class=tok)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    print(f"{family}: held-out preference accuracy {before['eval_rewards/accuracies']:.2f} -> "
          f"{after['eval_rewards/accuracies']:.2f}, margin {after['eval_rewards/margins']:.3f}")
    assert before["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at the start
    assert after["eval_rewards/accuracies"] >= 0.9
    assert after["eval_rewards/margins"] > 0
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert logged and {"rewards/accuracies", "rewards/margins", "rewards/chosen", "logps/rejected"} <= set(logged[-1])


def test_dpo_reads_datasets_and_holds_no_reference(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tiny_gpt2(tmp_path / "m")
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(folder)
    data = datasets.Dataset.from_list(preferences(16, 0))
    trainer = DPOTrainer(model=model, ref_model=reference, args=dpo_args(tmp_path, num_train_epochs=1.0),
                         train_dataset=data, processing_class=tok)
    assert all(isinstance(row["ref_chosen_logps"], float) for row in trainer.train_dataset)
    assert not any(value is reference for value in vars(trainer).values())
    trainer.train()


def test_dpo_rejects_bad_rows(tmp_path):
    folder = tiny_gpt2(tmp_path / "m")
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    with pytest.raises(Exception, match="rejected"):
        DPOTrainer(model=model, args=dpo_args(tmp_path), train_dataset=[{"prompt": "a", "chosen": "b"}],
                   processing_class=tok)


def test_dpo_command(tmp_path):
    from triformers.cli.main import main

    folder = tiny_t5(tmp_path / "m")
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in preferences(32, 0)))
    out = tmp_path / "out"
    assert main(["dpo", "--model", folder, "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--beta", "0.2", "--no-plot-loss"]) == 0
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    original = AutoModelForSeq2SeqLM.from_pretrained(folder)
    changed = any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(),
                                                         original.state_dict().values(), strict=True))
    assert changed
