"""Crash safety: a training run SIGKILLed at random moments and resumed each time ends bit-identical to
an uninterrupted run, and a process killed in the middle of a save leaves the previous checkpoint
loadable. Every run is a separate `python -m triformers pretrain` process (CPU, one thread)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from triformers import AutoModelForCausalLM
from triformers.training.checkpoints import checkpoint_paths, latest_checkpoint

STEPS = 120
KILLS = 3


def _pretrain_command(out: Path, cache: Path, tokenizer: Path | None, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "triformers", "pretrain", "--family", "decoder", "--steps", str(STEPS),
               "--max-docs", "200", "--vocab-size", "400", "--hidden-size", "32", "--layers", "1", "--heads", "2",
               "--seq-len", "32", "--batch-size", "2", "--save-every", "5", "--keep", "2", "--dropout", "0.1",
               "--eval-fraction", "0", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    if tokenizer is not None:
        command += ["--tokenizer", str(tokenizer)]
    return command + (["--resume"] if resume else [])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _logged_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return 0
    return max((int(line.split('"step": ')[1].split(",")[0]) for line in lines if '"step": ' in line), default=0)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    cache = tmp_path / "cache"
    reference = tmp_path / "reference"
    started = time.perf_counter()
    _run(_pretrain_command(reference, cache, None, resume=False))  # also trains the tokenizer, fills the cache
    seconds = time.perf_counter() - started
    out = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("TRIFORMERS_KILL_SEED", "9")))
    kills = []
    # each run is killed once its log shows a random step, after a further random fraction of a step or
    # a save (so that kills land anywhere: in a step, in a checkpoint write, in the metrics line)
    for attempt, target in enumerate(sorted(rng.sample(range(2, STEPS - 2), KILLS))):
        resume = latest_checkpoint(out) is not None
        process = subprocess.Popen(_pretrain_command(out, cache, reference, resume), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while process.poll() is None and _logged_step(out / "metrics.jsonl") < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, f"run {attempt} ended before its kill at step {target}"
        last = latest_checkpoint(out)
        kills.append((target, _logged_step(out / "metrics.jsonl"), last.name if last else None))
        if last is not None:  # whatever the moment, the newest checkpoint on disk is complete and loads
            AutoModelForCausalLM.from_pretrained(last)
            torch.load(last / "trainer_state.pt", weights_only=True)
    print(f"\nkills (target step, last logged step, newest checkpoint): {kills}; one uninterrupted run: "
          f"{seconds:.1f}s")
    assert any(name is not None for *_, name in kills), "no kill landed after a checkpoint; lengthen the run"
    _run(_pretrain_command(out, cache, reference, resume=latest_checkpoint(out) is not None))
    ours, theirs = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    final = torch.load(checkpoint_paths(out)[-1] / "trainer_state.pt", weights_only=True)
    expected = torch.load(checkpoint_paths(reference)[-1] / "trainer_state.pt", weights_only=True)
    assert final["step"] == expected["step"] == STEPS
    for key, value in expected["optimizer"]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(final["optimizer"]["state"][key][name], tensor), (key, name)
    assert not list((out / "checkpoints").glob(".tmp-*")), "a killed save left its temporary folder behind"


# Runs in a child process: saves through the library with `save_file` / `torch.save` made slow half-way,
# so that the parent can SIGKILL it in the middle of writing. The hook lives here, not in the library.
SLOW_SAVE = textwrap.dedent("""
    import sys, time, torch, safetensors.torch
    import triformers.io.pretrained, triformers.training.checkpoints
    from triformers import AutoModelForCausalLM

    def slow(write):
        def wrapper(obj, path, *args, **kwargs):
            with open(path, "wb") as handle:
                handle.write(b"half a file")
            print("WRITING", flush=True)
            time.sleep(60)
            return write(obj, path, *args, **kwargs)
        return wrapper

    triformers.io.pretrained.save_file = slow(safetensors.torch.save_file)
    torch.save = slow(torch.save)
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    with torch.no_grad():
        model.embed_tokens.weight.add_(1.0)
    if sys.argv[2] == "save_pretrained":
        model.save_pretrained(sys.argv[1])
    else:
        triformers.training.checkpoints.write_checkpoint(sys.argv[3], 999, {"step": 999}, model.save_pretrained, keep=5)
""")


@pytest.mark.parametrize("kind", ["save_pretrained", "trainer_checkpoint"])
def test_killed_during_a_save_the_previous_checkpoint_still_loads(tmp_path, kind):
    torch.manual_seed(0)
    from triformers import AutoConfig

    config = AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    model = AutoModelForCausalLM.from_config(config)
    folder = tmp_path / "model"
    if kind == "save_pretrained":
        model.save_pretrained(folder)
        target = folder
    else:
        from triformers.training.checkpoints import write_checkpoint

        write_checkpoint(folder, 5, {"step": 5}, model.save_pretrained, keep=5)
        target = folder / "checkpoints" / "checkpoint-0000005"
    before = load_file(target / "model.safetensors")
    script = tmp_path / "slow_save.py"
    script.write_text(SLOW_SAVE)
    process = subprocess.Popen([sys.executable, str(script), str(target), kind, str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    try:
        assert process.stdout.readline().strip() == "WRITING", process.stderr.read()[-2000:]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert [p.name for p in checkpoint_paths(folder)] == ([] if kind == "save_pretrained" else ["checkpoint-0000005"])
    after = AutoModelForCausalLM.from_pretrained(target)  # the previous checkpoint, complete and unchanged
    for key, tensor in load_file(target / "model.safetensors").items():
        assert torch.equal(tensor, before[key]), key
    assert torch.equal(after.embed_tokens.weight, model.embed_tokens.weight)
