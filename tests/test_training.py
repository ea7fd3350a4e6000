"""The trainer: overfitting, bit-identical resume, 2-process DDP equivalence, NaN stop, schedule, optimizer groups."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import free_port, join_as_rank

from triformers.pretraining.corpus import PackedBlocks, TokenCorpus, default_corpus, iter_documents, tokenize_corpus
from triformers.dialects import DIALECTS, get_dialect
from triformers.pretraining import AUTO_CLASSES, ModelSize, build_config, build_objective, train_family_tokenizer
from triformers.training import Trainer, TrainingArguments, TrainingError, build_optimizer, learning_rate
from triformers.training.checkpoints import checkpoint_paths

DIALECT_NAMES = [d for d in ("bert", "roberta", "gpt2", "bloom", "t5", "bart") if d in DIALECTS]
SIZE = ModelSize(hidden_size=32, layers=2, heads=2, seq_len=32, dropout=0.0)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return default_corpus(tmp_path_factory.mktemp("cache"), max_docs=200)


@functools.cache
def _tokenizer(dialect: str, corpus_file):
    # trained once per dialect: `tokenizers`' WordPiece training is not deterministic between calls
    # (ties between equally frequent pairs), and the resume test needs the same ids in both runs
    return train_family_tokenizer(dialect, iter_documents([corpus_file]), 400, 32)


def _setup(dialect: str, corpus_file, tmp_path, size: ModelSize = SIZE, seed: int = 0):
    """(model, objective, training blocks) for a tiny model of `dialect` on the short stdlib corpus."""
    tokenizer = _tokenizer(dialect, corpus_file)
    corpus = tokenize_corpus([corpus_file], tokenizer, cache_dir=tmp_path / "tokens")
    objective = build_objective(dialect, tokenizer, size.seq_len)
    blocks = PackedBlocks(corpus, np.arange(len(corpus)), objective.block_length, objective.separator,
                          objective.prefix, objective.suffix)
    torch.manual_seed(seed)
    model = AUTO_CLASSES[get_dialect(dialect).family].from_config(build_config(dialect, tokenizer, size))
    return model, objective, blocks


def run(trainer: Trainer):
    """Train; the run's summary (TrainResult: step, last loss, history)."""
    trainer.train()
    return trainer.result


def _args(out, **changes) -> TrainingArguments:
    base = dict(output_dir=str(out), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-3, warmup_steps=2,
                lr_scheduler_type="cosine", weight_decay=0.01, adam_beta2=0.98, seed=0, logging_steps=1,
                disable_tqdm=True, plot_loss=False)
    return TrainingArguments(**{**base, **changes})


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_tiny_model_overfits_one_batch(dialect, corpus_file, tmp_path):
    """80 steps on one fixed batch take the loss from ~ln(vocab) (about 6) below 1.0.

    T5 gets lr 3e-2 instead of 1e-2: from_config's N(0, 0.02) init with T5's d_model**-0.5 output
    scaling starts it with near-zero logits, from which it climbs more slowly.
    """
    model, objective, blocks = _setup(dialect, corpus_file, tmp_path)
    objective.collator.generator = torch.Generator().manual_seed(0)
    batch = objective.collator([blocks[i] for i in range(2)])
    args = _args(tmp_path / "out", per_device_train_batch_size=2, max_steps=80,
                 learning_rate=3e-2 if dialect == "t5" else 1e-2, warmup_steps=3,
                 lr_scheduler_type="constant_with_warmup", weight_decay=0.0, save_strategy="no")
    result = run(Trainer(model, args, [0] * 2, lambda examples: batch))
    first = result.history[0]["loss"]
    assert first > 5.0, first
    assert result.loss < 1.0, f"{dialect}: loss {first:.3f} -> {result.loss:.3f}"


def test_resume_is_bit_identical(corpus_file, tmp_path):
    """Interrupted after step 4 (checkpoint at 3), resumed: the same weights, bit for bit, as one run of 6.

    MLM (random masks) with dropout 0.1 (the torch RNG) exercises every piece of restored state.
    """
    size = ModelSize(hidden_size=32, layers=2, heads=2, seq_len=32, dropout=0.1)
    model, objective, blocks = _setup("bert", corpus_file, tmp_path, size)
    straight = run(Trainer(model, _args(tmp_path / "a", max_steps=6, gradient_accumulation_steps=2), blocks,
                           objective.collator))

    class Interrupt(Exception):
        pass

    class CrashingCollator:
        """The MLM collator (its per-batch generator passed through) that dies inside step 5."""

        calls = 0

        @property
        def generator(self):
            return objective.collator.generator

        @generator.setter
        def generator(self, value):
            objective.collator.generator = value

        def __call__(self, examples):
            self.calls += 1
            if self.calls > 8:  # 2 micro-batches per step
                raise Interrupt
            return objective.collator(examples)

    crashing_collator = CrashingCollator()

    model_b, _, _ = _setup("bert", corpus_file, tmp_path, size)
    args = _args(tmp_path / "b", max_steps=6, gradient_accumulation_steps=2, save_steps=3)
    with pytest.raises(Interrupt):
        Trainer(model_b, args, blocks, crashing_collator).train()
    assert [p.name for p in checkpoint_paths(tmp_path / "b")] == ["checkpoint-0000003"]
    torch.manual_seed(1234)  # the resumed process starts from unrelated RNG states
    np.random.seed(1234)
    model_c, _, _ = _setup("bert", corpus_file, tmp_path, size, seed=99)
    args.resume_from_checkpoint = True
    resumed = run(Trainer(model_c, args, blocks, objective.collator))
    assert resumed.step == 6 and resumed.loss == straight.loss
    for (name, a), (_, c) in zip(model.state_dict().items(), model_c.state_dict().items(), strict=True):
        assert torch.equal(a, c), name


def _ddp_worker(rank: int, world_size: int, port: int, corpus_path: str, config, out: str) -> None:
    import torch.distributed as dist

    join_as_rank(rank, world_size, port)
    from pathlib import Path

    trainer = _ddp_trainer(TokenCorpus.load(Path(corpus_path)), config, out, batch_size=4 // world_size)
    trainer.train()  # rank 0 writes checkpoint-0000004, which the test reads
    dist.destroy_process_group()


def _ddp_trainer(corpus, config, out, batch_size: int) -> Trainer:
    from triformers.models import DecoderModel
    from triformers.objectives import CLMCollator

    torch.manual_seed(0)
    model = DecoderModel.from_config(config, head="lm")
    blocks = PackedBlocks(corpus, np.arange(len(corpus)), 32, separator=config.eos_token_id)
    args = _args(out, max_steps=4, per_device_train_batch_size=batch_size, save_steps=2)
    return Trainer(model, args, blocks, CLMCollator(pad_token_id=config.eos_token_id))


def test_two_process_ddp_matches_one_process(corpus_file, tmp_path):
    """2 gloo processes x batch 2 == 1 process x batch 4, after 4 AdamW steps: max |diff| < 1e-5.

    Both see the same 4 blocks per step (rank r takes the r-th half); only the order of the
    floating-point gradient sums differs (all-reduce average vs one batch mean), so fp32 rounding
    is all that may differ.
    """
    model, _, blocks = _setup("gpt2", corpus_file, tmp_path)
    config = model.config
    single = _ddp_trainer(blocks.corpus, config, str(tmp_path / "one"), batch_size=4)
    single.train()
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(blocks.corpus.path), config, str(tmp_path / "two")),
                       nprocs=2, join=True, start_method="spawn")
    last = checkpoint_paths(tmp_path / "two")[-1]
    assert last.name == "checkpoint-0000004"  # rank 0 wrote the checkpoints
    distributed = torch.load(last / "trainer_state.pt", weights_only=True)
    assert distributed["world_size"] == 2 and distributed["global_batch"] == 4
    worst = max(float((distributed["model"][k] - v).abs().max()) for k, v in single.model.state_dict().items())
    print(f"2-process vs 1-process max |weight diff| after 4 steps: {worst:.2e}")
    assert worst < 1e-5, worst


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus_file, tmp_path):
    model, objective, blocks = _setup("gpt2", corpus_file, tmp_path)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 5:
            output.loss = output.loss * float("nan")
        return output

    model.register_forward_hook(poison)
    with pytest.raises(TrainingError, match=r"training stopped at step 5: loss is nan.*checkpoint-0000004.*intact"):
        Trainer(model, _args(tmp_path / "out", max_steps=8, save_steps=2, save_total_limit=3), blocks,
                objective.collator).train()
    kept = checkpoint_paths(tmp_path / "out")
    assert [p.name for p in kept] == ["checkpoint-0000002", "checkpoint-0000004"]
    state = torch.load(kept[-1] / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert (kept[-1] / "model.safetensors").is_file() and not list((tmp_path / "out" / "checkpoints").glob(".tmp*"))


def test_learning_rate_schedules():
    args = TrainingArguments(max_steps=110, learning_rate=1.0, warmup_steps=10, lr_scheduler_type="cosine",
                             min_lr_ratio=0.1, warmup_from_first_step=True)
    assert learning_rate(0, args) == pytest.approx(0.1) and learning_rate(9, args) == pytest.approx(1.0)
    assert learning_rate(60, args) == pytest.approx(0.1 + 0.9 * 0.5)  # cosine half way
    assert learning_rate(110, args) == pytest.approx(0.1)
    args.lr_scheduler_type = "linear"
    assert learning_rate(35, args) == pytest.approx(0.1 + 0.9 * 0.75)


def test_weight_decay_groups_transformers_and_the_commands(corpus_file, tmp_path):
    """transformers decays every weight matrix, embeddings too, and T5's relative position bias table not (it is
    named "bias"); the commands (embedding_weight_decay=False) spare the embeddings as well."""
    t5, _, _ = _setup("t5", corpus_file, tmp_path)
    decay, no_decay = build_optimizer(t5, TrainingArguments(weight_decay=0.1)).param_groups
    names = {id(p): n for n, p in t5.named_parameters()}
    assert "embed_tokens.weight" in {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"] if p.dim() == 2}
    assert exempt and all("positions" in n or "relative" in n or "bias" in n for n in exempt), exempt
    model, _, _ = _setup("gpt2", corpus_file, tmp_path)
    decay, no_decay = build_optimizer(model, TrainingArguments(weight_decay=0.1,
                                                               embedding_weight_decay=False)).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 and "embed" not in names[id(p)] for p in decay["params"])
    assert {"embed_tokens.weight"} <= {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("bias") for n in map(names.get, map(id, no_decay["params"])))
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert math.isclose(sum(p.numel() for g in (decay, no_decay) for p in g["params"]), model.num_parameters())
