"""Strict loading and atomic saving: bad weights files get errors that name the file, the keys and the
shapes; a pickle that would run code is refused before it runs; sharded checkpoints load; a failed
save leaves the previous checkpoint intact."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import triformers.io.pretrained
from triformers import AutoConfig, AutoModel, AutoModelForMaskedLM, CheckpointError

# A tiny BERT with a tied MLM head; 5 heads of 8, intermediate 70, vocab 211.
SHAPE = dict(vocab_size=211, hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=70,
             max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
IDS = torch.tensor([[2, 17, 45, 210, 9, 3], [2, 88, 3, 0, 0, 0]])
MASK = (IDS != 0).long()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A folder with config.json + model.safetensors written by triformers, and the model's logits."""
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model("bert", **SHAPE)).eval()
    folder = tmp_path_factory.mktemp("saved")
    model.save_pretrained(folder)
    with torch.no_grad():
        return folder, model(input_ids=IDS, attention_mask=MASK).logits


@pytest.fixture
def copy(saved, tmp_path):
    """A fresh copy of the saved checkpoint that a test may damage."""
    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    return folder


def logits(folder) -> torch.Tensor:
    with torch.no_grad():
        return AutoModelForMaskedLM.from_pretrained(folder)(input_ids=IDS, attention_mask=MASK).logits


def test_saved_folder_holds_only_the_final_files(saved):
    folder, expected = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    torch.testing.assert_close(logits(folder), expected, atol=0, rtol=0)  # same weights, same math


def test_pytorch_model_bin_loads_like_safetensors(saved, copy):
    torch.save(load_file(copy / "model.safetensors"), copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    torch.testing.assert_close(logits(copy), saved[1], atol=0, rtol=0)


def test_missing_weights_file(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"no weights in {copy}: expected model.safetensors"):
        AutoModel.from_pretrained(copy)


def test_truncated_safetensors_names_the_file(copy):
    path = copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt or truncated safetensors file .*model\.safetensors"):
        AutoModel.from_pretrained(copy)


def test_safetensors_with_a_garbage_header(copy):
    (copy / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"safetensors file .*model\.safetensors"):
        AutoModel.from_pretrained(copy)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_pytorch_model_bin_names_the_file(copy, damage):
    path = copy / "pytorch_model.bin"
    torch.save(load_file(copy / "model.safetensors"), path)
    (copy / "model.safetensors").unlink()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x80\x02garbage" * 50)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin") as err:
        AutoModel.from_pretrained(copy)
    assert "corrupt or truncated" in str(err.value) or "refused" in str(err.value)


class WritesAMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused(copy, tmp_path, writer):
    marker = tmp_path / "pwned"
    state = {**load_file(copy / "model.safetensors"), "payload": WritesAMarker(marker)}
    (copy / "model.safetensors").unlink()
    path = copy / "pytorch_model.bin"
    if writer == "torch.save":
        torch.save(state, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"refused to load .*pytorch_model\.bin"):
        AutoModel.from_pretrained(copy)
    assert not marker.exists(), "the checkpoint ran code while being loaded"


def test_missing_body_tensors_are_named_with_the_file(copy):
    path = copy / "model.safetensors"
    state = load_file(path)
    gone = ["bert.encoder.layer.1.output.dense.weight", "bert.embeddings.LayerNorm.bias"]
    save_file({k: v for k, v in state.items() if k not in gone}, path)
    with pytest.raises(CheckpointError) as err:
        AutoModelForMaskedLM.from_pretrained(copy)
    message = str(err.value)
    assert "lacks 2 tensors" in message and str(path) in message
    assert "encoder.layer.1.output.dense.weight" in message and "embeddings.LayerNorm.bias" in message


def test_wrong_shape_names_key_shapes_and_file(copy):
    path = copy / "model.safetensors"
    state = load_file(path)
    state["bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(71, 40)
    save_file(state, path)
    with pytest.raises(CheckpointError) as err:
        AutoModelForMaskedLM.from_pretrained(copy)
    message = str(err.value)
    assert str(path) in message and "bert.encoder.layer.0.intermediate.dense.weight" in message
    assert "(71, 40)" in message and "(70, 40)" in message
    assert "ignore_mismatched_sizes" not in message, "a body tensor cannot be re-initialised"


def test_sharded_safetensors_written_by_transformers_load(tmp_path):
    torch.manual_seed(1)
    theirs = transformers.BertForMaskedLM(transformers.BertConfig(**SHAPE)).eval()
    theirs.save_pretrained(tmp_path, max_shard_size="40KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (tmp_path / "model.safetensors.index.json").is_file()
    with torch.no_grad():
        # fp32 parity with transformers: atol 1e-5 (see tests/test_encoder.py for why)
        torch.testing.assert_close(logits(tmp_path), theirs(input_ids=IDS, attention_mask=MASK).logits,
                                   atol=1e-5, rtol=0)


def sharded(copy, shard_name: str):
    """Move the weights into one shard and write an index that names it `shard_name`."""
    state = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").rename(copy / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {key: shard_name for key in state}}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("outside", ["../model-00001-of-00001.safetensors", "ABSOLUTE",
                                     "sub/../../model-00001-of-00001.safetensors"])
def test_shard_index_pointing_outside_the_folder_is_refused(copy, outside):
    if outside == "ABSOLUTE":
        outside = str(copy / "model-00001-of-00001.safetensors")
    shutil.copy(copy / "model.safetensors", copy.parent / "model-00001-of-00001.safetensors")  # bait
    sharded(copy, outside)
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: shard name .* points outside "
                                              r"the model folder; refused") as err:
        AutoModel.from_pretrained(copy)
    assert repr(outside) in str(err.value)


def test_shard_index_naming_a_missing_shard(copy):
    sharded(copy, "model-00001-of-00002.safetensors")
    with pytest.raises(CheckpointError, match=r"shard 'model-00001-of-00002.safetensors' is missing"):
        AutoModel.from_pretrained(copy)


def test_a_good_shard_index_loads(saved, copy):
    sharded(copy, "model-00001-of-00001.safetensors")
    torch.testing.assert_close(logits(copy), saved[1], atol=0, rtol=0)


def test_failed_save_keeps_the_previous_checkpoint(saved, copy, monkeypatch):
    before = (copy / "model.safetensors").read_bytes()

    def dies_half_way(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(triformers.io.pretrained, "save_file", dies_half_way)
    torch.manual_seed(5)
    other = AutoModelForMaskedLM.from_config(AutoConfig.for_model("bert", **SHAPE))
    with pytest.raises(CheckpointError, match=rf"cannot save into {copy}: disk full"):
        other.save_pretrained(copy)
    assert (copy / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in copy.iterdir()) == ["config.json", "model.safetensors"], "temp file left behind"
    torch.testing.assert_close(logits(copy), saved[1], atol=0, rtol=0)


def test_transposed_gpt2_weights_are_views_until_used_then_row_major_and_exact(tmp_path):
    """GPT-2's Conv1D weights load as transposed views of the tensors read (no second copy); a prompt-sized
    forward keeps them, a decode-sized one (or train(), pack_weights()) writes them out row-major: the values
    stay exactly the file's, and the file still reads back right afterwards."""
    from triformers import AutoModelForCausalLM

    config = transformers.GPT2Config(n_layer=2, n_embd=256, n_head=4, vocab_size=300, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    names = (("mlp.c_fc", "mlp", "up"), ("mlp.c_proj", "mlp", "down"), ("attn.c_attn", "attn", "qkv"),
             ("attn.c_proj", "attn", "out"))
    weights = {f"transformer.h.{i}.{name}.weight": getattr(getattr(model.decoder.layers[i], part), leaf).weight
               for i in range(2) for name, part, leaf in names}
    assert all(not w.is_contiguous() and w.t().is_contiguous() for w in weights.values())
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        prompt = model(ids).logits  # 40 rows: the views are read as they are
        assert all(not w.is_contiguous() for w in weights.values())
        step = model(ids[:1, :3]).logits  # 3 rows: written out row-major
    assert all(w.is_contiguous() for w in weights.values())
    for key, weight in weights.items():
        assert torch.equal(weight, stored[key].t()), key
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, prompt, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(ids[:1, :3]).logits, step, atol=1e-5, rtol=0)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)  # the file is untouched by the first model
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    trained = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    assert all(m.weight.is_contiguous() for m in trained.modules() if isinstance(m, torch.nn.Linear))
    packed = AutoModelForCausalLM.from_pretrained(tmp_path).pack_weights()
    assert all(m.weight.is_contiguous() for m in packed.modules() if isinstance(m, torch.nn.Linear))


def test_t5_wo_loads_in_fp32_from_an_fp32_checkpoint_when_the_rest_is_bf16(tmp_path):
    from triformers import AutoModelForSeq2SeqLM

    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4,
                                   feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    wo = model.encoder.layers[0].mlp.down.weight
    assert wo.dtype == torch.float32
    assert torch.equal(wo, stored["encoder.block.0.layer.1.DenseReluDense.wo.weight"])  # not rounded via bf16
    assert model.encoder.layers[0].mlp.gate_up.weight.dtype == torch.bfloat16  # wi_0 | wi_1, fused
