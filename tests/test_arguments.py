"""TrainingArguments: transformers 5.24's names and defaults, validation that names the field, and the Trainer's
plan (steps from epochs, fractions of the run, eval / save / logging strategies, example order)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from triformers.training import Trainer, TrainingArguments, TrainingError, learning_rate, make_plan
from triformers.training.checkpoints import checkpoint_paths
from triformers.training.plan import epoch_order

# triformers' own settings; every other field is transformers' (same name, same default)
EXTRAS = {"overwrite_output_dir", "min_lr_ratio", "max_eval_batches", "plot_loss", "device", "warmup_from_first_step",
          "embedding_weight_decay"}
# transformers' fields of another type: `fsdp` takes legacy strings ("full_shard"), `disable_tqdm` None (it
# then follows the log level); here both are plain booleans, off by default
RETYPED = {"fsdp", "disable_tqdm"}


def test_field_names_and_defaults_are_transformers():
    transformers = pytest.importorskip("transformers")
    theirs = {f.name: f for f in dataclasses.fields(transformers.TrainingArguments)}
    ours = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    assert set(ours) - set(theirs) == EXTRAS
    for name in set(ours) - EXTRAS - RETYPED:
        their_default = theirs[name].default
        if isinstance(their_default, str):  # their enums compare equal to the strings we keep
            their_default = str(their_default)
        assert ours[name].default == their_default, name
    assert TrainingArguments().output_dir == "trainer_output"  # transformers' __post_init__ (it needs accelerate)


@pytest.mark.parametrize("changes, message", [
    (dict(learning_rate=float("nan")), "learning_rate=nan must be a finite number"),
    (dict(learning_rate="3e-4"), "learning_rate='3e-4' must be float"),
    (dict(max_steps=0), "max_steps=0 must be -1"),
    (dict(max_steps=-2), "max_steps=-2 must be -1"),
    (dict(num_train_epochs=0), "num_train_epochs=0 must be a positive number"),
    (dict(per_device_train_batch_size=0), "per_device_train_batch_size=0 must be at least 1"),
    (dict(lr_scheduler_type="polynomial"), "lr_scheduler_type='polynomial' must be one of"),
    (dict(eval_strategy="best"), "eval_strategy='best' must be one of"),
    (dict(save_strategy="always"), "save_strategy='always' must be one of"),
    (dict(save_strategy="best"), "save_strategy='best' needs an eval_strategy"),
    (dict(load_best_model_at_end=True, eval_strategy="epoch"), "needs eval_strategy and save_strategy to match"),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_steps=4), "multiple of eval_steps"),
    (dict(fp16=True), "fp16=True is not supported: float16 needs loss scaling"),
    (dict(push_to_hub=True), "push_to_hub=True is not supported"),
    (dict(warmup_steps=-1), "warmup_steps=-1 must be a whole number of steps"),
    (dict(warmup_steps=2.5), "warmup_steps=2.5 must be a whole number of steps"),
    (dict(lr_scheduler_type="constant", warmup_steps=10), "warmup_steps=10 needs lr_scheduler_type"),
    (dict(logging_steps=0), "logging_steps=0 must be"),
    (dict(save_steps=0), "save_steps=0 must be"),
    (dict(adam_beta2=1.0), "adam_beta2=1.0 must be in"),
    (dict(max_grad_norm=-1.0), "max_grad_norm=-1.0 must be"),
    (dict(save_total_limit=0), "save_total_limit=0 must be None or >= 1"),
    (dict(report_to="wandb"), "report_to='wandb' is not supported yet"),
    (dict(dataloader_num_workers=-1), "dataloader_num_workers=-1 must not be negative"),
    (dict(seed=True), "seed=True must be int"),
])
def test_bad_values_are_refused_naming_the_field(changes, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(").replace("[", r"\[")):
        TrainingArguments(**changes)


@pytest.mark.parametrize("name", ["warmup_ratio", "group_by_length", "not_a_field"])
def test_keywords_transformers_524_does_not_have_are_its_type_error(name):
    """transformers 5.24 dropped warmup_ratio (warmup_steps below 1 is the fraction) and group_by_length
    (train_sampling_strategy): passing them is a TypeError naming them there, and here."""
    with pytest.raises(TypeError, match=name):
        TrainingArguments(**{name: 0.1})
    transformers = pytest.importorskip("transformers")
    with pytest.raises(TypeError, match=name):
        transformers.TrainingArguments(output_dir="unused", **{name: 0.1})


def test_best_model_defaults_are_transformers():
    args = TrainingArguments(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch")
    assert (args.metric_for_best_model, args.greater_is_better) == ("loss", False)
    assert TrainingArguments(metric_for_best_model="accuracy").greater_is_better is True


def test_values_that_turn_things_off_are_accepted():
    TrainingArguments(save_strategy="no", save_steps=0, logging_strategy="no", logging_steps=0, max_grad_norm=0.0,
                      report_to=["none"], warmup_steps=0.25, eval_strategy="steps", eval_steps=0.5)


def test_the_trainer_checks_fields_changed_after_construction():
    args = TrainingArguments()
    args.learning_rate = float("inf")
    with pytest.raises(TrainingError, match="learning_rate=inf"):
        Trainer(Toy(), args, examples(16), collate)


def test_plan_steps_from_epochs_and_fractions_of_the_run():
    """transformers' layout: an epoch is ceil(batches / accumulation) steps, its last batch smaller."""
    args = TrainingArguments(num_train_epochs=2, warmup_steps=0.1, logging_steps=0.25, per_device_train_batch_size=16)
    plan = make_plan(args, examples=48)  # 3 steps an epoch
    assert (plan.max_steps, plan.warmup_steps, plan.logging_steps) == (6, 1, 2)
    assert make_plan(dataclasses.replace(args, num_train_epochs=1.5), 50).max_steps == 6  # 4 batches an epoch
    assert make_plan(dataclasses.replace(args, max_steps=7), 48).max_steps == 7  # max_steps wins
    assert [s for s in range(1, 11) if make_plan(args, 40, batch_size=8).ends_epoch(s)] == [5, 10]
    assert [s for s in range(1, 8) if make_plan(args, 40).ends_epoch(s)] == [3, 6]  # 16 + 16 + 8
    accumulated = make_plan(dataclasses.replace(args, gradient_accumulation_steps=2), 50, batch_size=8)  # 7 batches
    assert accumulated.steps_per_epoch == 4 and list(accumulated.micro_batches(3)[1]) == [6]
    assert accumulated.micro_batches(4) == (1, range(0, 2))
    assert [accumulated.epoch(s) for s in (1, 3, 4)] == [2 / 7, 6 / 7, 1.0]  # transformers' state.epoch
    with pytest.raises(TrainingError, match="fewer than one batch"):
        make_plan(dataclasses.replace(args, dataloader_drop_last=True), 10)


def test_learning_rate_warmup_as_a_fraction_and_the_constant_schedules():
    args = TrainingArguments(max_steps=100, learning_rate=1.0, warmup_steps=0.1, lr_scheduler_type="linear")
    assert learning_rate(0, args) == 0.0 and learning_rate(5, args) == pytest.approx(0.5)  # transformers: s / warmup
    assert learning_rate(10, args) == pytest.approx(1.0) and learning_rate(55, args) == pytest.approx(0.5)
    first = dataclasses.replace(args, warmup_from_first_step=True)  # the commands' warmup: (s + 1) / warmup
    assert learning_rate(0, first) == pytest.approx(0.1) and learning_rate(9, first) == pytest.approx(1.0)
    with_warmup = dataclasses.replace(first, lr_scheduler_type="constant_with_warmup")
    assert learning_rate(4, with_warmup) == pytest.approx(0.5) and learning_rate(99, with_warmup) == 1.0
    constant = dataclasses.replace(args, lr_scheduler_type="constant", warmup_steps=0)
    assert learning_rate(0, constant) == learning_rate(99, constant) == 1.0
    with pytest.raises(TrainingError, match="run's length is unknown"):
        learning_rate(0, TrainingArguments())


def test_group_by_length_order():
    """Every example once per epoch; each global batch from one mega-batch sorted longest first; the longest
    example of all first; the same order for the same (seed, epoch), another for the next epoch."""
    lengths = np.random.default_rng(0).integers(1, 100, size=200)
    args = TrainingArguments(train_sampling_strategy="group_by_length")
    order = epoch_order(args, 0, 200, 4, lengths)
    assert sorted(order.tolist()) == list(range(200))
    assert lengths[order[0]] == lengths.max()
    mega = 200 // 16 * 4  # 12 batches of 4 in each mega-batch
    for start in range(0, 200, mega):
        part = lengths[order[start + 1:start + mega]] if start == 0 else lengths[order[start:start + mega]]
        assert (np.diff(part) <= 0).all()
    assert np.array_equal(order, epoch_order(args, 0, 200, 4, lengths))
    assert not np.array_equal(order, epoch_order(args, 1, 200, 4, lengths))
    sequential = dataclasses.replace(args, train_sampling_strategy="sequential")
    assert epoch_order(sequential, 3, 10, 4).tolist() == list(range(10))


# ---- the strategies, honoured by a real Trainer on a toy regression ----------------------------------------
class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, input_ids, labels):
        return SimpleNamespace(loss=((self.linear(input_ids) - labels) ** 2).mean())


def examples(n: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 4, generator=generator)
    return [{"input_ids": x, "labels": x.sum(-1, keepdim=True)} for x in inputs]


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([example[key] for example in batch]) for key in batch[0]}


def train_toy(tmp_path, eval_data=True, **changes):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, learning_rate=1e-2,
                             disable_tqdm=True, plot_loss=False, **changes)
    trainer = Trainer(Toy(), args, examples(40), collate, eval_data=examples(12) if eval_data else None,
                      export=lambda model, folder: None)
    trainer.train()
    result = trainer.result
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    saved = [int(p.name.split("-")[1]) for p in checkpoint_paths(tmp_path)]
    return result, lines, saved


def test_epoch_strategies_log_evaluate_and_save_after_each_epoch(tmp_path):
    result, lines, saved = train_toy(tmp_path, num_train_epochs=2, logging_strategy="epoch", eval_strategy="epoch",
                                     save_strategy="epoch")
    assert result.step == 10  # 2 epochs of 40 examples in batches of 8
    assert [r["step"] for r in lines if "loss" in r] == [5, 10]
    assert [r["step"] for r in lines if "eval_loss" in r] == [5, 10]
    assert saved == [5, 10] and result.eval_loss == lines[-2]["eval_loss"]  # the last line is the summary
    assert lines[0]["epoch"] == 1.0


def test_step_strategies_and_the_last_step(tmp_path):
    result, lines, saved = train_toy(tmp_path, max_steps=10, logging_steps=4, eval_strategy="steps", eval_steps=0.3,
                                     save_steps=4, save_total_limit=2)
    assert [r["step"] for r in lines if "loss" in r] == [4, 8]  # as transformers: the summary line ends the run
    assert "train_loss" in lines[-1] and lines[-1]["step"] == 10
    assert [r["step"] for r in lines if "eval_loss" in r] == [3, 6, 9, 10]  # ceil(0.3 * 10) = every 3, and the end
    assert saved == [8, 10]  # 4, 8 and the end; the newest 2 kept


def test_no_strategies_no_evaluation_and_only_the_final_model(tmp_path):
    result, lines, saved = train_toy(tmp_path, max_steps=4, logging_steps=1, save_strategy="no")
    assert result.eval_loss is None and not any("eval_loss" in r for r in lines)
    assert saved == [] and [r["step"] for r in lines] == [1, 2, 3, 4, 4]  # four steps and the summary


def test_an_eval_strategy_needs_held_out_data(tmp_path):
    with pytest.raises(TrainingError, match="eval_strategy='epoch' but there is no held-out data"):
        train_toy(tmp_path, eval_data=False, eval_strategy="epoch")
