"""GGUF files: dequantization against gguf's reference, conversion against transformers 5.24, hostile files.

Small files are written in each test with the `gguf` package's GGUFWriter (tests/gguf_assets.py); the real
SmolLM2 file is tested in test_gguf_smollm2.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gguf_assets import CHATML, TEXT, Q, add_tensor, gguf, patch_tensor_entry, write_model
from triformers import AutoTokenizer
from triformers.dialects import DIALECTS
from triformers.errors import CheckpointError, ConfigError, TriformersError
from triformers.io.gguf import SUPPORTED_TYPES, GGUFFile
from triformers.io.gguf_mapping import ARCHITECTURES, GGUFTensors, hf_config, llama3_factors
from triformers.tokenization.gguf import tokenizer_parts

SPM = "spm-tokenizer/botchan_en_bpe_1000.model"


def one_tensor_file(path, qtype, shape=(4, 512), seed=0):
    """A file holding one tensor of `qtype` (and a 3-D F32 one, for the dimension order), and its float input."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape).astype(np.float32)
    writer = gguf.GGUFWriter(str(path), "llama")
    add_tensor(writer, "w", values, qtype, rng)
    writer.add_tensor("cube", np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values


@pytest.mark.parametrize("type_name", SUPPORTED_TYPES)
def test_dequantizes_exactly_as_gguf_reference(tmp_path, type_name):
    qtype = Q[type_name]
    values = one_tensor_file(tmp_path / "t.gguf", qtype)
    reference = gguf.GGUFReader(str(tmp_path / "t.gguf"))
    tensor = next(t for t in reference.tensors if t.name == "w")
    expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    ours = GGUFFile(tmp_path / "t.gguf")
    got = ours.read("w")
    assert got.dtype == torch.float32 and tuple(got.shape) == values.shape == expected.shape
    assert np.array_equal(got.numpy(), expected, equal_nan=True)
    if qtype not in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):  # quantized by gguf from `values`: close to them
        assert np.abs(got.numpy() - values).max() < 0.6
    cube = ours.read("cube")
    assert torch.equal(cube, torch.arange(2 * 3 * 32, dtype=torch.float32).reshape(2, 3, 32))


def test_header_matches_gguf_reader(tmp_path):
    path = write_model(tmp_path / "m.gguf", "qwen2", qtype=Q.Q8_0)
    ours, reference = GGUFFile(path), gguf.GGUFReader(str(path))
    for key, field in reference.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        assert ours.metadata[key] == (pytest.approx(value) if isinstance(value, float) else value), key
        assert ours.types[key][0] == int(field.types[0])
    assert [(t.name, tuple(int(d) for d in reversed(t.shape)), int(t.tensor_type), int(t.data_offset))
            for t in reference.tensors] == [(i.name, i.shape, i.ggml_type, i.offset)
                                            for i in ours.tensors.values()]


def _transformers_conversion(path):
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    return config, load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]


CASES = {"llama": ("llama", {}), "qwen2": ("qwen2", {"qtype": Q.Q8_0}), "qwen3": ("qwen3", {"tied": False}),
         "gemma3": ("gemma3", {"spm": True, "qtype": Q.Q4_0}), "llama-spm": ("llama", {"spm": True, "qtype": Q.Q4_1})}


@pytest.mark.parametrize("case", list(CASES))
def test_conversion_matches_transformers(tmp_path, case):
    """Config dict, tensors (names and values, exactly) and tokenizer (pipeline, specials, ids) of a tiny file of
    each architecture equal transformers 5.24's own conversion of it."""
    from transformers import AutoTokenizer as HFTokenizer

    from conftest import asset

    arch, options = CASES[case]
    if options.pop("spm", False):
        options["spm"] = asset(SPM)
    path = write_model(tmp_path / f"{case}.gguf", arch, **options)
    config, tensors = _transformers_conversion(path)
    source = GGUFFile(path)
    ours = hf_config(source)
    if arch == "qwen3":  # read by triformers, dropped by transformers (which falls back to Qwen3Config's 128)
        assert ours.pop("head_dim") == 16 and "head_dim" not in config
    assert ours == config
    converted = GGUFTensors(source)
    assert set(converted) == set(tensors)
    for name, expected in tensors.items():
        assert torch.equal(converted[name], expected), name
    theirs, mine = HFTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name), AutoTokenizer.from_pretrained(path)
    assert json.loads(mine.backend.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    assert mine.special_tokens_map == theirs.special_tokens_map
    assert (mine.padding_side, mine.all_special_tokens) == (theirs.padding_side, theirs.all_special_tokens)
    assert mine.chat_template == theirs.chat_template == CHATML
    for text in (TEXT, "  two  spaces\tand a tab", "<|im_start|>user\nhi<|im_end|>", "naïve café 東京", ""):
        assert mine(text)["input_ids"] == theirs(text)["input_ids"], text
        assert mine(text, "a pair")["input_ids"] == theirs(text, "a pair")["input_ids"], text
    ids = theirs(TEXT)["input_ids"]
    assert mine.decode(ids) == theirs.decode(ids)


def test_tensor_names_match_gguf_tensor_map():
    """Our GGUF -> HF name table agrees with gguf's own HF -> GGUF table for every architecture."""
    from triformers.io.gguf_mapping import hf_name

    for arch, spec in ARCHITECTURES.items():
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], 2)
        for template in gguf.MODEL_TENSORS[gguf.MODEL_ARCH[arch.upper()]]:
            gguf_name = gguf.TENSOR_NAMES[template].format(bid=1)
            ours = hf_name(gguf_name + ".weight", spec, 2)
            if ours is not None:
                assert names.get_name(ours.removesuffix(".weight")) == gguf_name, (arch, gguf_name, ours)


def test_llama3_rope_factors_become_rope_scaling(tmp_path):
    """Llama 3.x files keep only the per-frequency factors (`rope_freqs`): read back as the llama3 parameters."""
    params = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    for edit in ({}, {"low_freq_factor": 2.0, "high_freq_factor": 8.0}):
        wanted = {**params, **edit}
        path = write_model(tmp_path / "m.gguf", "llama", head_dim=128, heads=2, kv_heads=1, hidden=256, ffn=256,
                           layers=1, rope_freqs=llama3_factors(wanted, 500000.0, 128).numpy(), rope_theta=500000.0)
        assert hf_config(GGUFFile(path))["rope_scaling"] == wanted
    path = write_model(tmp_path / "m.gguf", "llama", head_dim=128, heads=2, kv_heads=1, hidden=256, ffn=256, layers=1,
                       rope_freqs=np.linspace(3, 1, 64).astype(np.float32))
    with pytest.raises(ConfigError, match="rope_freqs"):
        hf_config(GGUFFile(path))


@pytest.mark.parametrize("case", ["llama", "qwen2", "qwen3", "gemma3"])
def test_tiny_model_logits_match_transformers(tmp_path, case):
    """A tiny file of each architecture, loaded by both libraries (dequantized, fp32), gives the same logits."""
    from transformers import AutoModelForCausalLM as HFModel

    from triformers import AutoModelForCausalLM

    arch, options = CASES[case]
    options = {k: v for k, v in options.items() if k != "spm"}
    if arch == "qwen3":  # transformers drops the file's head_dim and takes Qwen3Config's 128 (as real Qwen3 has)
        options["head_dim"] = 128
    path = write_model(tmp_path / f"{case}.gguf", arch, **options)
    model_type = ARCHITECTURES[arch].model_type
    assert model_type in DIALECTS
    ours = AutoModelForCausalLM.from_pretrained(path)
    theirs = HFModel.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 1]])
    with torch.no_grad():
        # fp32, two layers: what differs is the order of float operations only
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-5)


# -- hostile files --------------------------------------------------------------------------------------------
def _fails(path, error=CheckpointError, match=None):
    """Every way in (the header, the config, the tokenizer) fails with `error`, naming the file."""
    with pytest.raises(error, match=match) as info:
        source = GGUFFile(path)
        hf_config(source)
        tokenizer_parts(source)
        for name in GGUFTensors(source):
            GGUFTensors(source)[name]
    assert str(path) in str(info.value)
    return info.value


@pytest.fixture
def model_file(tmp_path):
    return write_model(tmp_path / "m.gguf", "llama", qtype=Q.Q8_0)


def test_truncated_files_are_checkpoint_errors(tmp_path, model_file):
    data = model_file.read_bytes()
    header_end = min(info.offset for info in GGUFFile(model_file).tensors.values())
    for cut in (0, 3, 10, 23, 30, 200, 5000, header_end - 7, header_end + 100, len(data) - 1):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        _fails(path)


def test_bad_magic_version_and_counts(tmp_path, model_file):
    data = bytearray(model_file.read_bytes())
    cases = {"magic": (0, b"GGML"), "version": (4, (1).to_bytes(4, "little")),
             "bigendian": (4, (3).to_bytes(4, "big")), "tensors": (8, (2**40).to_bytes(8, "little")),
             "keys": (16, (2**62).to_bytes(8, "little"))}
    messages = {"magic": "not a GGUF file", "version": "version 1", "bigendian": "big-endian",
                "tensors": "tensor count", "keys": "metadata key count"}
    for name, (offset, patch) in cases.items():
        broken = bytearray(data)
        broken[offset:offset + len(patch)] = patch
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(bytes(broken))
        _fails(path, match=messages[name])


def _edited(tmp_path, name, edit_writer=None, **model):
    """A model file written with a hook that edits the writer before it writes."""
    path = tmp_path / f"{name}.gguf"
    return write_model(path, model.pop("arch", "llama"), before_write=edit_writer, **model)


def test_absurd_sizes_and_layouts(tmp_path, model_file):
    data = model_file.read_bytes()
    offsets = {i.name: i.offset - min(t.offset for t in GGUFFile(model_file).tensors.values())
               for i in GGUFFile(model_file).tensors.values()}
    cases = {"elements": ("dim0", 2**50, "elements"), "past_end": ("dim0", 2**20, "past the end"),
             "type": ("type", 99, "does not define"), "misaligned": ("offset", offsets["output_norm.weight"] + 4,
                                                                     "alignment"),
             "overlap": ("offset", offsets["token_embd.weight"], "overlaps")}
    for case, (field, value, match) in cases.items():
        path = tmp_path / f"{case}.gguf"
        path.write_bytes(patch_tensor_entry(data, "output_norm.weight", field, value))
        _fails(path, match=match)

    def long_key(writer):
        writer.add_string("x" * 70000, "v")

    _fails(_edited(tmp_path, "key", long_key), match="metadata key")


def test_unknown_architecture_and_unsupported_types(tmp_path):
    path = write_model(tmp_path / "falcon.gguf", "llama", arch_name="falcon")
    error = _fails(path, ConfigError, match="architecture 'falcon' is not supported")
    assert "llama" in str(error)

    def iq2(writer):
        writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 66), dtype=np.uint8), raw_dtype=Q.IQ2_XXS)

    _fails(_edited(tmp_path, "iq2", iq2, skip=("blk.0.attn_q.weight",)), match="IQ2_XXS")


def test_metadata_values_are_checked(tmp_path):
    for key, value, match in (("llama.block_count", "thirty", "llama.block_count"),
                              ("tokenizer.ggml.bos_token_id", 10**6, "bos_token_id"),
                              ("general.alignment", 3, "general.alignment"),
                              ("split.count", 3, "split GGUF")):
        def edit(writer, key=key, value=value):
            writer.kv_data[0].pop(key, None)
            if isinstance(value, str):
                writer.add_string(key, value)
            else:
                writer.add_uint32(key, value)

        _fails(_edited(tmp_path, key.replace(".", "_"), edit), match=match)


def test_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.gguf")
    with pytest.raises(CheckpointError, match="not a regular file"):
        GGUFFile(tmp_path / "pipe.gguf")
    with pytest.raises(CheckpointError, match="not found"):
        GGUFFile(tmp_path / "missing.gguf")


def test_random_damage_is_always_a_clear_error(tmp_path, model_file):
    """Bytes flipped anywhere in the header: a TriformersError or a file that still reads, never a raw error."""
    data = model_file.read_bytes()
    end = min(info.offset for info in GGUFFile(model_file).tensors.values())
    rng = np.random.default_rng(0)
    for trial in range(150):
        broken = bytearray(data)
        for offset in rng.integers(0, end, 3):
            broken[offset] = int(rng.integers(0, 256))
        path = tmp_path / f"r{trial}.gguf"
        path.write_bytes(bytes(broken))
        try:
            source = GGUFFile(path)
            config = hf_config(source)
            tokenizer_parts(source)
            tensors = GGUFTensors(source, config)
            for name in tensors:
                tensors[name]
        except TriformersError:
            pass


def test_hub_names_and_saved_tokenizer(tmp_path, monkeypatch):
    """`gguf_file=` in a Hugging Face cache snapshot (offline: the network never asked; a snapshot without the
    file is not it), and the GGUF tokenizer saved as a folder that transformers loads with the same ids."""
    import huggingface_hub
    from transformers import AutoTokenizer as HFTokenizer

    from triformers import ModelNotFoundError

    commit = "b" * 40
    repo = tmp_path / "hub" / "models--org--tiny-gguf"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    write_model(repo / "snapshots" / commit / "m.gguf", "qwen2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("the hub was asked"))
    tok = AutoTokenizer.from_pretrained("org/tiny-gguf", gguf_file="m.gguf")
    with pytest.raises(ModelNotFoundError, match="other.gguf"):
        AutoTokenizer.from_pretrained("org/tiny-gguf", gguf_file="other.gguf")
    tok.save_pretrained(tmp_path / "saved")
    again, theirs = AutoTokenizer.from_pretrained(tmp_path / "saved"), HFTokenizer.from_pretrained(tmp_path / "saved")
    for text in (TEXT, "<|im_start|>user\nhi<|im_end|>"):
        assert again(text)["input_ids"] == tok(text)["input_ids"] == theirs(text)["input_ids"]
    assert theirs.chat_template == CHATML and again.chat_template == CHATML


def test_a_folder_of_gguf_files_names_them(tmp_path):
    from triformers import AutoConfig

    write_model(tmp_path / "tiny.Q8_0.gguf", "qwen2", qtype=Q.Q8_0)
    with pytest.raises(ConfigError, match=r"gguf_file='tiny.Q8_0.gguf'"):
        AutoConfig.from_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.Q8_0.gguf", padding_side="left").padding_side == \
        "left"  # tokenizer_config.json keys as overrides, as for a folder
