"""Saves are published whole, checkpoints never vanish, and a loaded model is independent of its file.

- a save (model, tokenizer, the trainer's final export) becomes visible as one set: a process killed
  between two renames leaves a folder that loads as the new set, never new weights under an old config;
  a reader racing a writer only ever sees one whole save; stale shards and indexes never outlive a save;
- re-saving a trainer checkpoint of the same step never leaves that step without a complete checkpoint;
- weights are read into memory: rewriting or truncating the file afterwards changes nothing and cannot
  kill the process (SIGBUS); a file rewritten while it is read, or a `.bin` storage record cut short, is
  a CheckpointError; a tensor is taken from the shard the index's weight_map names.
Kills run in a child process that SIGKILLs itself at the chosen moment, under a time limit.
"""

from __future__ import annotations

import json
import threading
import time
import zipfile

import pytest
import torch
from conftest import run_limited
from safetensors.torch import load_file, save_file

from triformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, CheckpointError
from triformers.io.weights import read_weights
from triformers.tokenization import train_tokenizer
from triformers.training.checkpoints import checkpoint_paths, latest_checkpoint, write_checkpoint

IDS = torch.tensor([[1, 2, 3, 4]])


def gpt2(positions: int, seed: int):
    torch.manual_seed(seed)
    config = AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=positions)
    return AutoModelForCausalLM.from_config(config).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


# ---- 1. a save is published as one set --------------------------------------------------------------------
KILL_MID_PUBLISH = """
    import os, signal, sys, torch
    from pathlib import Path
    from triformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from triformers.training.checkpoints import export_into
    folder, kind = Path(sys.argv[1]), sys.argv[2]
    torch.manual_seed(1)
    config = AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=24)
    model = AutoModelForCausalLM.from_config(config)
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[3])
    real = os.replace
    def replace(src, dst, *args, **kwargs):  # the first file moved into the folder is the last thing done
        real(src, dst, *args, **kwargs)
        if Path(dst).parent == folder:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    if kind == "model":
        model.save_pretrained(folder)
    elif kind == "tokenizer":
        tokenizer.save_pretrained(str(folder))
    else:
        export_into(folder, lambda staging: (model.save_pretrained(staging), tokenizer.save_pretrained(staging)))
"""


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    out = {}
    for name, words in (("old", "hello world"), ("new", "fuzzing finds what tests forget")):
        folder = tmp_path_factory.mktemp(f"tok-{name}")
        train_tokenizer([words] * 10, kind="bpe", vocab_size=64, model_max_length=16).save_pretrained(str(folder))
        out[name] = folder
    return out


@pytest.mark.parametrize("kind", ["model", "tokenizer", "trainer_export"])
def test_killed_between_two_renames_the_folder_loads_as_the_new_set(tmp_path, tokenizers, kind):
    folder = tmp_path / "out"
    old = gpt2(16, 0)
    old.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(tokenizers["old"])).save_pretrained(str(folder))
    done = run_limited(KILL_MID_PUBLISH, str(folder), kind, str(tokenizers["new"]))
    assert done.returncode == -9, done.stderr[-2000:]
    assert list(folder.glob(".triformers-staging-*")), "the kill came after the publication finished"
    new = gpt2(24, 1)
    if kind != "tokenizer":  # config.json and the weights both of the new save (n_positions 24)
        loaded = AutoModelForCausalLM.from_pretrained(folder)
        assert loaded.config.max_positions == 24
        torch.testing.assert_close(logits(loaded), logits(new), rtol=0, atol=0)
    if kind != "model":
        expected = AutoTokenizer.from_pretrained(str(tokenizers["new"]))
        assert AutoTokenizer.from_pretrained(str(folder)).get_vocab() == expected.get_vocab()
    old.save_pretrained(folder)  # the next save finishes the dead one's publication, then publishes its own
    assert not list(folder.glob(".triformers-staging-*"))
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(folder)), logits(old), rtol=0, atol=0)


def test_a_reader_racing_a_writer_sees_only_whole_saves(tmp_path):
    folder = tmp_path / "m"
    models = [gpt2(16, 0), gpt2(24, 1)]  # config and weights both differ: a torn pair cannot load
    expected = [logits(m) for m in models]
    models[0].save_pretrained(folder)
    stop, errors = threading.Event(), []

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            models[i % 2].save_pretrained(folder)

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                out = logits(AutoModelForCausalLM.from_pretrained(folder))
            except CheckpointError as err:  # a torn folder: shapes of one save, config of the other
                errors.append(str(err))
                continue
            match = [torch.equal(out, e) for e in expected]
            assert any(match), "a load mixed two saves"
            seen.add(match.index(True))
    finally:
        stop.set()
        writer.join()
    assert not errors, errors[:3]
    assert seen == {0, 1}, "the race never happened; lengthen it"


def test_saving_over_a_sharded_folder_leaves_no_stale_index_or_shard(tmp_path):
    folder = tmp_path / "m"
    old, new = gpt2(16, 0), gpt2(16, 1)
    old.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    (folder / "notes.txt").write_text("the user's own file")
    (folder / "checkpoints").mkdir()
    new.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "config.json", "generation_config.json",
                                                         "model.safetensors", "notes.txt"]
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(folder)), logits(new), rtol=0, atol=0)


def test_a_save_that_fails_to_write_leaves_the_old_set_and_names_the_folder(tmp_path, monkeypatch):
    import errno

    import triformers.io.pretrained

    folder = tmp_path / "m"
    old = gpt2(16, 0)
    old.save_pretrained(folder)

    def full_disk(state, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(triformers.io.pretrained, "save_file", full_disk)
    with pytest.raises(CheckpointError, match=rf"cannot save into {folder}: .*No space left on device"):
        gpt2(24, 1).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(folder)), logits(old), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"it is a file, not a folder"):
        old.save_pretrained(folder / "config.json")


# ---- 2. a trainer checkpoint never vanishes ------------------------------------------------------------
KILL_MID_CHECKPOINT = """
    import os, signal, sys, torch
    from pathlib import Path
    import triformers.training.checkpoints as checkpoints
    from triformers import AutoConfig, AutoModelForCausalLM
    out, moment = Path(sys.argv[1]), sys.argv[2]
    torch.manual_seed(1)
    config = AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    model = AutoModelForCausalLM.from_config(config)
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if moment == "in_export":
        export = lambda folder: (model.save_pretrained(folder), die())
    else:  # no RENAME_EXCHANGE: the old checkpoint is moved aside; die right after that
        checkpoints.exchange = lambda a, b: False
        real = os.replace
        def replace(src, dst, *args, **kwargs):
            real(src, dst, *args, **kwargs)
            if Path(dst).name.startswith(".old-"):
                die()
        os.replace = replace
        export = model.save_pretrained
    checkpoints.write_checkpoint(out, 5, {"step": 5, "new": True}, export, keep=3)
"""


@pytest.mark.parametrize("moment", ["in_export", "after_moving_the_old_one_aside"])
def test_resaving_a_step_killed_midway_keeps_a_complete_checkpoint(tmp_path, moment):
    out = tmp_path / "run"
    old = gpt2(16, 0)
    write_checkpoint(out, 5, {"step": 5, "new": False}, old.save_pretrained, keep=3)
    done = run_limited(KILL_MID_CHECKPOINT, str(out), moment)
    assert done.returncode == -9, done.stderr[-2000:]
    last = latest_checkpoint(out)
    assert last is not None and last.name == "checkpoint-0000005"
    assert torch.load(last / "trainer_state.pt", weights_only=True) == {"step": 5, "new": False}
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(last)), logits(old), rtol=0, atol=0)
    write_checkpoint(out, 6, {"step": 6}, old.save_pretrained, keep=3)  # the sweep keeps step 5
    assert [p.name for p in checkpoint_paths(out)] == ["checkpoint-0000005", "checkpoint-0000006"]
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def test_resaving_a_step_swaps_in_the_new_checkpoint(tmp_path):
    out = tmp_path / "run"
    old, new = gpt2(16, 0), gpt2(16, 1)
    write_checkpoint(out, 5, {"step": 5, "new": False}, old.save_pretrained, keep=3)
    write_checkpoint(out, 5, {"step": 5, "new": True}, new.save_pretrained, keep=3)
    (last,) = checkpoint_paths(out)
    assert torch.load(last / "trainer_state.pt", weights_only=True)["new"] is True
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(last)), logits(new), rtol=0, atol=0)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-0000005"]


# ---- 3. a loaded model does not depend on its file -------------------------------------------------------
def test_rewriting_the_file_in_place_does_not_change_a_loaded_model(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    gpt2(16, 0).save_pretrained(first)
    gpt2(16, 1).save_pretrained(second)
    model = AutoModelForCausalLM.from_pretrained(first)
    before = logits(model)
    with open(first / "model.safetensors", "r+b") as handle:  # `cp b a`: the same inode, rewritten
        handle.write((second / "model.safetensors").read_bytes())
    torch.testing.assert_close(logits(model), before, rtol=0, atol=0)


def test_truncating_the_file_after_loading_cannot_kill_the_process(tmp_path):
    gpt2(16, 0).save_pretrained(tmp_path)
    done = run_limited("""
        import os, sys, torch
        from triformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
        os.truncate(os.path.join(sys.argv[1], "model.safetensors"), 0)
        with torch.no_grad():
            model(torch.tensor([[1, 2, 3]]))
            model.train()  # GPT-2's transposed weights are written out row-major: every byte touched
            model(torch.tensor([[1, 2, 3]]))
        print("alive")
    """, str(tmp_path))
    assert done.returncode == 0 and done.stdout.strip() == "alive", (done.returncode, done.stderr[-2000:])


def test_a_file_rewritten_while_it_is_read_is_refused(tmp_path):
    gpt2(16, 0).save_pretrained(tmp_path)
    tensors, _ = read_weights(tmp_path)  # the header is read; tensors are read when asked for
    time.sleep(0.05)  # past the file system's timestamp granularity
    path = tmp_path / "model.safetensors"
    with open(path, "r+b") as handle:
        handle.write(path.read_bytes())  # same bytes, rewritten: the modification time changes
    with pytest.raises(CheckpointError, match=r"model\.safetensors changed while it was being read"):
        tensors[next(iter(tensors))]


def test_a_bin_storage_record_cut_short_is_refused(tmp_path):
    gpt2(16, 0).save_pretrained(tmp_path)
    good = tmp_path / "good.bin"
    torch.save(load_file(tmp_path / "model.safetensors"), good)
    (tmp_path / "model.safetensors").unlink()
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as damaged:
        for info in source.infolist():
            data = source.read(info)
            damaged.writestr(info, data[: len(data) // 2] if info.filename.endswith("data/0") else data)
    with pytest.raises(CheckpointError, match=r"corrupt or truncated checkpoint .*pytorch_model\.bin"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("case", ["listed_in_two_shards", "in_two_shards_unlisted", "listed_but_missing"])
def test_a_tensor_comes_from_the_shard_the_weight_map_names(tmp_path, case):
    model = gpt2(16, 0)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    key, other = "transformer.wte.weight", "transformer.ln_f.bias"
    save_file({k: v for k, v in state.items() if k != other}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({other: state[other], key: torch.zeros_like(state[key])},  # a stale copy of `key`
              tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in state} | {other: "model-00002-of-00002.safetensors"}
    if case == "in_two_shards_unlisted":
        del weight_map[key]
    if case == "listed_but_missing":
        weight_map["lm_head.extra"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if case == "listed_in_two_shards":
        torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(tmp_path)), logits(model),
                                   rtol=0, atol=0)
    else:
        message = r"tensor 'transformer\.wte\.weight' is in both" if case == "in_two_shards_unlisted" \
            else r"puts tensor 'lm_head\.extra' in model-00002-of-00002\.safetensors, which lacks it"
        with pytest.raises(CheckpointError, match=message):
            AutoModelForCausalLM.from_pretrained(tmp_path)
