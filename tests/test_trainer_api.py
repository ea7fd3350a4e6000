"""The Trainer's transformers-shaped surface, piece by piece: the data collators against transformers' own, the
default collator, dropped columns, callbacks and their events, best-model loading, resume, the keyword forms
(tokenizer=, the older positional order, model_init, optimizers, compute_loss_func), auto_find_batch_size,
DataLoader workers, Seq2SeqTrainer with generate, and the top-level names."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from conftest import asset

import triformers
from triformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer,
                        DataCollatorForLanguageModeling, DataCollatorForSeq2Seq, DataCollatorForTokenClassification,
                        DataCollatorWithPadding, EarlyStoppingCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                        Trainer, TrainerCallback, TrainingArguments, default_data_collator, set_seed)
from triformers.errors import InputError, TrainingError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizers():
    """(ours, transformers') bert-base-uncased WordPiece tokenizer."""
    folder = asset("all-MiniLM-L6-v2")
    return AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def features(tokenizer, texts, **extra):
    encoded = tokenizer(texts)
    return [{**{k: encoded[k][i] for k in encoded}, **{k: v[i] for k, v in extra.items()}} for i in range(len(texts))]


TEXTS = ["a short one", "a somewhat longer sentence than that", "mid length text"]


def assert_same_batch(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("side, multiple", [("right", None), ("left", 8)])
def test_padding_collator_matches_transformers(tokenizers, side, multiple):
    ours, theirs = tokenizers
    ours.padding_side = theirs.padding_side = side
    try:
        rows = features(theirs, TEXTS, label=[0, 1, 0])
        assert_same_batch(DataCollatorWithPadding(ours, pad_to_multiple_of=multiple)(rows),
                          transformers.DataCollatorWithPadding(theirs, pad_to_multiple_of=multiple)(rows))
    finally:
        ours.padding_side = theirs.padding_side = "right"


def test_token_classification_and_default_collators_match_transformers(tokenizers):
    ours, theirs = tokenizers
    rows = features(theirs, TEXTS)
    for row in rows:
        row["labels"] = [i % 3 for i in range(len(row["input_ids"]))]
    assert_same_batch(DataCollatorForTokenClassification(ours)(rows),
                      transformers.DataCollatorForTokenClassification(theirs)(rows))
    fixed = [{"input_ids": [1, 2, 3], "label": 1, "text": "dropped"}, {"input_ids": [4, 5, 6], "label": 0,
                                                                       "text": "too"}]
    assert_same_batch(default_data_collator(fixed), transformers.default_data_collator(fixed))


def test_seq2seq_collator_matches_transformers_with_decoder_inputs(tmp_path, tokenizers):
    ours, theirs = tokenizers
    config = transformers.T5Config(vocab_size=ours.vocab_size, d_model=16, d_ff=32, d_kv=8, num_layers=1,
                                   num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    rows = features(theirs, TEXTS)
    for row, target in zip(rows, ["x", "a longer target", "mid"], strict=True):
        row["labels"] = theirs(target)["input_ids"]
    mine = DataCollatorForSeq2Seq(ours, model=AutoModelForSeq2SeqLM.from_pretrained(tmp_path), pad_to_multiple_of=4)
    oracle = transformers.DataCollatorForSeq2Seq(
        theirs, model=transformers.T5ForConditionalGeneration.from_pretrained(tmp_path), pad_to_multiple_of=4)
    batch = mine(rows)
    assert_same_batch(batch, oracle(rows))
    assert (batch["labels"] == -100).any() and batch["labels"].shape[1] % 4 == 0
    assert "decoder_input_ids" not in DataCollatorForSeq2Seq(ours, model="a checkpoint name")(rows)  # as theirs


def test_language_modeling_collators(tokenizers):
    ours, theirs = tokenizers
    rows = features(theirs, TEXTS * 20)
    causal = DataCollatorForLanguageModeling(ours, mlm=False)(rows)
    assert_same_batch(causal, transformers.DataCollatorForLanguageModeling(theirs, mlm=False)(rows))
    masking = DataCollatorForLanguageModeling(ours, mlm_probability=0.15, seed=0)
    batch = masking(rows)
    assert sorted(batch) == ["attention_mask", "input_ids", "labels", "token_type_ids"]  # token types padded along
    chosen = batch["labels"] != -100
    real = (batch["attention_mask"] == 1) & ~torch.isin(batch["labels"], torch.tensor(ours.all_special_ids))
    assert 0.08 < chosen.sum() / real.sum() < 0.25  # ~15% of the real tokens
    assert (batch["input_ids"][chosen] == ours.mask_token_id).float().mean() > 0.6  # ~80% of them [MASK]
    with pytest.raises(InputError, match="whole_word_mask needs mlm=True"):
        DataCollatorForLanguageModeling(ours, mlm=False, whole_word_mask=True)


def tiny_classifier(labels: int = 2):
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, num_labels=labels, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    return AutoModelForSequenceClassification.from_config(config)


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(3, 50, size=6).tolist(), "label": int(i % 2), "text": f"row {i}"}
            for i in range(n)]


def arguments(tmp_path, **changes) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, learning_rate=1e-3, max_steps=4,
                logging_steps=1, save_strategy="no", disable_tqdm=True, plot_loss=False)
    return TrainingArguments(**{**base, **changes})


def test_default_collator_and_dropped_columns(tmp_path, tokenizers):
    ours, _ = tokenizers
    assert isinstance(Trainer(tiny_classifier(), arguments(tmp_path), processing_class=ours).data_collator,
                      DataCollatorWithPadding)
    assert Trainer(tiny_classifier(), arguments(tmp_path)).data_collator is default_data_collator
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list(rows(16))
    trainer = Trainer(tiny_classifier(), arguments(tmp_path), train_dataset=data)
    assert trainer.train().global_step == 4  # the text column dropped (remove_columns), label renamed
    assert data.column_names == ["input_ids", "label", "text"]  # the caller's dataset untouched
    Trainer(tiny_classifier(), arguments(tmp_path, overwrite_output_dir=True), train_dataset=rows(16)).train()
    extra = [{**row, "weight": 1.0} for row in rows(16)]  # a column the forward does not take
    Trainer(tiny_classifier(), arguments(tmp_path, overwrite_output_dir=True), train_dataset=extra).train()
    kept = Trainer(tiny_classifier(), arguments(tmp_path, remove_unused_columns=False, overwrite_output_dir=True),
                   train_dataset=extra)
    with pytest.raises(TypeError, match="weight"):  # kept, as asked: the forward refuses it
        kept.train()
    with pytest.raises(InputError, match="'text' holds text"):  # text reaching a padding collator
        DataCollatorWithPadding(ours)([{"input_ids": [1, 2], "text": "a"}])


class Recorder(TrainerCallback):
    def __init__(self, stop_at: int | None = None):
        self.events, self.stop_at = [], stop_at

    def __getattribute__(self, name):
        if name.startswith("on_"):
            def record(args, state, control, **kwargs):
                self.events.append(name)
                if name == "on_step_end" and state.global_step == self.stop_at:
                    control.should_training_stop = True
                assert {"model", "optimizer", "lr_scheduler", "train_dataloader"} <= set(kwargs)
            return record
        return object.__getattribute__(self, name)


def test_callbacks_get_transformers_events_and_can_stop(tmp_path):
    recorder = Recorder(stop_at=2)
    trainer = Trainer(tiny_classifier(), arguments(tmp_path, gradient_accumulation_steps=2, eval_strategy="steps",
                                                   eval_steps=1), train_dataset=rows(32), eval_dataset=rows(4),
                      callbacks=[recorder])
    assert trainer.train().global_step == 2  # stopped by the callback
    events = recorder.events
    assert events[:4] == ["on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin"]
    first_step = events[events.index("on_step_begin"):events.index("on_step_end") + 1]
    assert first_step == ["on_step_begin", "on_substep_end", "on_pre_optimizer_step", "on_optimizer_step",
                          "on_step_end"]
    assert {"on_log", "on_evaluate", "on_prediction_step", "on_epoch_end"} <= set(events)
    assert events[-1] == "on_train_end"


def test_best_model_at_end_and_early_stopping(tmp_path):
    args = arguments(tmp_path, max_steps=12, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     save_total_limit=1, load_best_model_at_end=True, learning_rate=0.05)
    trainer = Trainer(tiny_classifier(), args, train_dataset=rows(48), eval_dataset=rows(8, seed=1),
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    evaluations = [r for r in trainer.state.log_history if "eval_loss" in r]
    best = min(evaluations, key=lambda r: r["eval_loss"])
    assert trainer.state.best_metric == best["eval_loss"] and trainer.state.best_global_step == best["step"]
    checkpoints = sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir())
    assert f"checkpoint-{best['step']:07d}" in checkpoints and len(checkpoints) <= 2  # the newest and the best
    best_weights = torch.load(f"{trainer.state.best_model_checkpoint}/trainer_state.pt", weights_only=True)["model"]
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(tensor, best_weights[name], rtol=0, atol=0)
    assert json.loads((tmp_path / "out" / "checkpoints" / checkpoints[-1] / "trainer_state.json").read_text())[
        "best_metric"] is not None


def test_resume_continues_the_log_history(tmp_path):
    args = arguments(tmp_path, max_steps=6, save_strategy="steps", save_steps=3)
    straight = Trainer(tiny_classifier(), args, train_dataset=rows(32))
    straight.train()
    interrupted = arguments(tmp_path, max_steps=6, output_dir=str(tmp_path / "b"), save_strategy="steps", save_steps=3)
    Trainer(tiny_classifier(), interrupted, train_dataset=rows(32), callbacks=[Recorder(stop_at=3)]).train()
    resumed = Trainer(tiny_classifier(), arguments(tmp_path, max_steps=6, output_dir=str(tmp_path / "b")),
                      train_dataset=rows(32))
    with pytest.raises(TrainingError, match="global batch"):  # a checkpoint of a run with another batch size
        Trainer(tiny_classifier(), arguments(tmp_path, max_steps=6, output_dir=str(tmp_path / "b"),
                                             per_device_train_batch_size=2), train_dataset=rows(32)).train(True)
    resumed.train(resume_from_checkpoint=True)
    losses = [r["loss"] for r in resumed.state.log_history if "loss" in r]
    assert losses == [r["loss"] for r in straight.state.log_history if "loss" in r]  # steps 1-3 restored, 4-6 rerun


def test_keyword_forms(tmp_path, tokenizers):
    ours, _ = tokenizers
    assert Trainer(tiny_classifier(), arguments(tmp_path), tokenizer=ours).processing_class is ours  # 4.x name
    older = Trainer(tiny_classifier(), arguments(tmp_path), rows(16), default_data_collator)  # (data, collator)
    assert older.train_dataset is not None and older.data_collator is default_data_collator
    built = Trainer(model_init=lambda: tiny_classifier(3), args=arguments(tmp_path))
    assert built.model.config.num_labels == 3
    model = tiny_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    seen = {}

    def loss_func(outputs, labels, num_items_in_batch=None):
        seen["items"] = int(num_items_in_batch)
        return torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch

    trainer = Trainer(model, arguments(tmp_path, gradient_accumulation_steps=2, overwrite_output_dir=True),
                      train_dataset=rows(32), optimizers=(optimizer, scheduler), compute_loss_func=loss_func)
    trainer.train()
    assert trainer.optimizer is optimizer and seen["items"] == 8  # labels of the 2 x 4 accumulated examples
    assert [r["learning_rate"] for r in trainer.state.log_history if "loss" in r] == [0.05] * 4


def test_auto_find_batch_size_halves_on_out_of_memory(tmp_path):
    model = tiny_classifier()
    original = model.forward

    @functools.wraps(original)  # the signature the Trainer reads the columns from
    def forward(*args, **kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. (simulated)")
        return original(*args, **kwargs)

    model.forward = forward
    trainer = Trainer(model, arguments(tmp_path, per_device_train_batch_size=8, auto_find_batch_size=True),
                      train_dataset=rows(16))
    assert trainer.train().global_step == 4 and trainer.state.train_batch_size == 2
    model.forward = functools.wraps(original)(lambda *a, **k: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory.")))
    with pytest.raises(TrainingError, match="batch of 1"):
        Trainer(model, arguments(tmp_path, per_device_train_batch_size=2, auto_find_batch_size=True,
                                 overwrite_output_dir=True), train_dataset=rows(16)).train()


def test_dataloader_workers_give_the_same_masks(tmp_path, tokenizers):
    """Masks come from per-batch seeds, so collating in worker processes changes nothing."""
    ours, _ = tokenizers
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", vocab_size=ours.vocab_size, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    data = [{"input_ids": ids} for ids in ours(TEXTS * 8)["input_ids"]]
    losses = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = triformers.AutoModelForMaskedLM.from_config(config)
        trainer = Trainer(model, arguments(tmp_path, dataloader_num_workers=workers, output_dir=str(tmp_path / str(
            workers))), train_dataset=data, data_collator=DataCollatorForLanguageModeling(ours))
        trainer.train()
        losses.append([r["loss"] for r in trainer.state.log_history if "loss" in r])
    assert losses[0] == losses[1]


def test_seq2seq_trainer_predicts_with_generate(tmp_path):
    torch.manual_seed(0)
    config = AutoConfig.for_model("t5", vocab_size=60, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)
    model = AutoModelForSeq2SeqLM.from_config(config)
    data = [{"input_ids": list(range(3, 3 + n)), "labels": list(range(10, 10 + n % 4 + 1)) + [1]} for n in range(2, 12)]
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "out"), predict_with_generate=True,
                                    generation_max_length=7, per_device_eval_batch_size=4, disable_tqdm=True,
                                    save_strategy="no", max_steps=2, plot_loss=False)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, data_collator=pad_seq2seq)
    trainer.train()
    output = trainer.predict(data)
    assert output.predictions.shape == (10, 7)  # generated ids padded to generation_max_length
    assert output.label_ids.shape == (10, 7) and "test_loss" in output.metrics
    assert trainer.predict(data, max_new_tokens=3).predictions.shape == (10, 4)  # gen kwargs reach generate
    assert trainer.evaluate()["eval_loss"] > 0


def pad_seq2seq(batch):
    from triformers.tokenization.batch import pad_ids

    ids, mask = pad_ids([b["input_ids"] for b in batch], 0)
    labels, _ = pad_ids([b["labels"] for b in batch], -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_set_seed_and_the_top_level_names():
    set_seed(3)
    first = torch.rand(3)
    set_seed(3)
    assert torch.equal(first, torch.rand(3))
    for name in ("Trainer", "TrainingArguments", "Seq2SeqTrainer", "Seq2SeqTrainingArguments", "TrainerCallback",
                 "TrainOutput", "DataCollatorWithPadding", "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq",
                 "DataCollatorForTokenClassification", "default_data_collator", "set_seed"):
        assert name in triformers.__all__ and getattr(triformers, name) is not None
    with pytest.raises(TrainingError, match="sortish_sampler"):
        Seq2SeqTrainingArguments(sortish_sampler=True)
