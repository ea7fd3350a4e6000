"""FSDP training: 2 gloo processes (FSDP2 `fully_shard` on CPU) against 1 plain process, resume, export, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import free_port, join_as_rank

from triformers import AutoModelForCausalLM
from triformers.cli import build_parser
from triformers.cli.flags import parse_flags
from triformers.pretraining.corpus import PackedBlocks, TokenCorpus, default_corpus, iter_documents, tokenize_corpus
from triformers.models import DecoderModel
from triformers.objectives import CLMCollator
from triformers.pretraining import ModelSize, PretrainOptions, build_config, train_family_tokenizer
from triformers.training import Trainer, TrainingArguments, TrainingError
from triformers.training.checkpoints import checkpoint_paths

SIZE = ModelSize(hidden_size=32, layers=2, heads=2, seq_len=32, dropout=0.0)


@pytest.fixture(scope="module")
def corpus_and_config(tmp_path_factory):
    """Token corpus and a tiny GPT-2 config from 200 stdlib docstrings."""
    cache = tmp_path_factory.mktemp("cache")
    corpus_file = default_corpus(cache, max_docs=200)
    tokenizer = train_family_tokenizer("gpt2", iter_documents([corpus_file]), 400, 32)
    corpus = tokenize_corpus([corpus_file], tokenizer, cache_dir=cache / "tokens")
    return corpus, build_config("gpt2", tokenizer, SIZE)


def _trainer(corpus, config, out, batch_size: int, seed: int = 0, **changes) -> Trainer:
    torch.manual_seed(seed)
    model = DecoderModel.from_config(config, head="lm")
    blocks = PackedBlocks(corpus, np.arange(len(corpus)), 32, separator=config.eos_token_id)
    # evaluated after the last step (FSDP's collective forwards) and saved every 2 steps
    args = TrainingArguments(output_dir=str(out), max_steps=4, per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=batch_size, learning_rate=1e-3, warmup_steps=2,
                             lr_scheduler_type="cosine", weight_decay=0.01, adam_beta2=0.98, seed=0,
                             eval_strategy="steps", eval_steps=4, max_eval_batches=16, save_steps=2,
                             disable_tqdm=True, plot_loss=False, **changes)
    return Trainer(model, args, blocks, CLMCollator(pad_token_id=config.eos_token_id), eval_data=blocks)


def _fsdp_worker(rank: int, world_size: int, port: int, corpus_path: str, config, tmp: str) -> None:
    """One rank: an FSDP run of 4 steps, a resume of it from step 2, and a resume of a non-FSDP checkpoint."""
    import torch.distributed as dist

    join_as_rank(rank, world_size, port)
    corpus, tmp = TokenCorpus.load(Path(corpus_path)), Path(tmp)
    batch = 4 // world_size
    _trainer(corpus, config, tmp / "two", batch, fsdp=True).train()
    resume = str(tmp / "two" / "checkpoints" / "checkpoint-0000002")
    _trainer(corpus, config, tmp / "resumed", batch, seed=99, fsdp=True, resume_from_checkpoint=resume).train()
    try:
        _trainer(corpus, config, tmp / "mixed", batch, fsdp=True,
                 resume_from_checkpoint=str(tmp / "one" / "checkpoints" / "checkpoint-0000004")).train()
    except TrainingError as err:
        assert "without fsdp" in str(err), err
    else:
        raise AssertionError("an FSDP run resumed a DDP / single-process checkpoint")
    dist.destroy_process_group()


def test_two_process_fsdp_matches_one_process(corpus_and_config, tmp_path):
    """2 gloo FSDP processes x batch 2 == 1 plain process x batch 4, after 4 AdamW steps: max |diff| < 1e-5.

    Each step both see the same 4 blocks; FSDP reduce-scatters (averages) the two halves' gradients
    where the single process takes one batch mean, so only fp32 summation order differs (observed
    ~1e-7). Resuming the FSDP run from its step-2 checkpoint ends bit-identical to it, and the
    gathered export in the output folder loads with AutoModelForCausalLM.
    """
    corpus, config = corpus_and_config
    single = _trainer(corpus, config, tmp_path / "one", batch_size=4)
    single.train()
    mp.start_processes(_fsdp_worker, args=(2, free_port(), str(corpus.path), config, str(tmp_path)),
                       nprocs=2, join=True, start_method="spawn")
    last = checkpoint_paths(tmp_path / "two")[-1]
    assert last.name == "checkpoint-0000004"
    sharded = torch.load(last / "trainer_state.pt", weights_only=True)
    assert sharded["fsdp"] and sharded["world_size"] == 2 and sharded["global_batch"] == 4
    expected = single.model.state_dict()
    assert sharded["model"].keys() == expected.keys()
    worst = max(float((sharded["model"][k] - v).abs().max()) for k, v in expected.items())
    print(f"2-process FSDP vs 1-process max |weight diff| after 4 steps: {worst:.2e}")
    assert worst < 1e-5, worst
    assert len(sharded["optimizer"]["state"]) == len(expected)  # full AdamW moments for every parameter

    resumed = torch.load(checkpoint_paths(tmp_path / "resumed")[-1] / "trainer_state.pt", weights_only=True)
    for name, value in sharded["model"].items():
        assert torch.equal(resumed["model"][name], value), name

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    for name, value in exported.state_dict().items():
        assert torch.equal(value, sharded["model"][name]), name
    ids = torch.arange(16).reshape(2, 8)
    single.model.eval()
    torch.testing.assert_close(exported(input_ids=ids).logits, single.model(input_ids=ids).logits,
                               atol=1e-4, rtol=1e-4)


def test_fsdp_needs_a_process_group(corpus_and_config, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    corpus, config = corpus_and_config
    with pytest.raises(TrainingError, match=r"fsdp shards the model across processes: launch with torchrun"):
        _trainer(corpus, config, tmp_path / "out", batch_size=4, fsdp=True)


def test_cli_fsdp_flag():
    args = build_parser().parse_args(["pretrain", "--family", "decoder", "--fsdp"])
    assert parse_flags(PretrainOptions, args).training.fsdp
    plain = build_parser().parse_args(["pretrain", "--family", "decoder"])
    assert not parse_flags(PretrainOptions, plain).training.fsdp
