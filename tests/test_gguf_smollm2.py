"""The real SmolLM2-135M-Instruct Q4_1 GGUF (llama architecture; Q4_1, Q8_0 and F32 tensors), loaded by triformers
and by transformers 5.24 side by side.

transformers reads the file once per module (its conversion takes tens of seconds): the model comes from
`AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`, and the tensors of its own conversion
(`load_gguf_checkpoint`) are recorded while it loads, so that both checks use one read of the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import asset
from triformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from triformers.io.gguf import GGUFFile
from triformers.io.gguf_mapping import GGUFTensors, hf_config

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXTS = ("Hello world", "The capital of France is", " leading space and  two spaces\n\nnew lines\ttab",
         "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n", "naïve café, 東京 🙂 1234567",
         "def f(x):\n    return x ** 2  # square", "<|endoftext|><jupyter_code>print(1)<empty_output>")
PROMPTS = ("The capital of France is", "def fibonacci(n):", "<|im_start|>user\nName three colours.<|im_end|>\n"
           "<|im_start|>assistant\n")
MESSAGES = [{"role": "user", "content": "What is the boiling point of water?"}]


@pytest.fixture(scope="module")
def path():
    return asset(f"smollm2/{NAME}")


@pytest.fixture(scope="module")
def transformers_side(path):
    """transformers' model, tokenizer, config dict and converted tensors for the file (one conversion)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM as HFModel
    from transformers import AutoTokenizer as HFTokenizer

    recorded, original = {}, gguf_utils.load_gguf_checkpoint

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        if kwargs.get("return_tensors"):
            recorded.update(result)
        return result

    gguf_utils.load_gguf_checkpoint = recording
    try:
        model = HFModel.from_pretrained(str(path.parent), gguf_file=NAME).eval()
    finally:
        gguf_utils.load_gguf_checkpoint = original
    tokenizer = HFTokenizer.from_pretrained(str(path.parent), gguf_file=NAME)
    return {"model": model, "tokenizer": tokenizer, "config": recorded["config"], "tensors": recorded["tensors"]}


@pytest.fixture(scope="module")
def source(path):
    return GGUFFile(path)


def test_config_dict_equals_transformers(source, transformers_side):
    config = hf_config(source)
    assert config == transformers_side["config"]
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"],
            config["vocab_size"], config["tie_word_embeddings"]) == (30, 9, 3, 49152, True)


def test_tensors_equal_transformers(source, transformers_side):
    """Every tensor, dequantized and under its HF name (q / k un-permuted), equals transformers' exactly."""
    ours, theirs = GGUFTensors(source), transformers_side["tensors"]
    assert set(ours) == set(theirs) and len(theirs) == 272
    types = {source.tensors[ours.gguf_name(name)].type_name for name in theirs}
    assert types == {"Q4_1", "Q8_0", "F32"}
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


def test_tokenizer_equals_transformers(path, transformers_side):
    theirs, ours = transformers_side["tokenizer"], AutoTokenizer.from_pretrained(path.parent, gguf_file=NAME)
    assert json.loads(ours.backend.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    assert ours.special_tokens_map == theirs.special_tokens_map == {
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}
    assert (ours.bos_token_id, ours.eos_token_id, ours.unk_token_id, ours.pad_token_id) == (1, 2, 0, 2)
    assert ours.config["add_bos_token"] is False and len(ours) == len(theirs) == 49152
    assert ours.chat_template == theirs.chat_template and "<|im_start|>" in theirs.chat_template
    for text in TEXTS:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    batch = ours(list(TEXTS[:3]), padding=True, return_tensors="pt")
    expected = theirs(list(TEXTS[:3]), padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])


def test_paths_and_auto_config(path):
    """A path straight to the file and `gguf_file=` name the same checkpoint; AutoConfig reads its metadata."""
    ours = AutoTokenizer.from_pretrained(path)
    assert ours("Hello world")["input_ids"] == [19556, 905]
    config = AutoConfig.from_pretrained(path.parent, gguf_file=NAME)
    assert AutoConfig.from_pretrained(path) == config
    assert (config.num_layers, config.num_heads, config.hidden_size, config.vocab_size) == (30, 9, 576, 49152)


# -- the model -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ours(path):
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=NAME)


@pytest.fixture(scope="module")
def tokenizer(path):
    return AutoTokenizer.from_pretrained(path)


def test_logits_match_transformers(ours, transformers_side, tokenizer):
    """Same dequantized weights in fp32: the logits differ only by the order of float operations over 30 layers.
    Tolerance atol 2e-4 on logits of magnitude 30-40: a few times what transformers' own attention kernels (sdpa
    against eager) and thread counts differ by on these prompts, and far below what a wrong rotary, norm or
    weight would move (a quantization step of one weight matrix moves them by ~1e-2 and more)."""
    theirs = transformers_side["model"]
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=2e-4, rtol=1e-5)


def test_greedy_tokens_match_transformers(ours, transformers_side, tokenizer):
    theirs = transformers_side["model"]
    for prompt in PROMPTS:
        batch = tokenizer(prompt, return_tensors="pt")
        expected = theirs.generate(**batch, max_new_tokens=32, do_sample=False, pad_token_id=2)
        got = ours.generate(**batch, max_new_tokens=32, do_sample=False, pad_token_id=2)
        assert got.tolist() == expected.tolist(), prompt


def test_chat_template_ids_match_transformers(ours, transformers_side, tokenizer):
    theirs = transformers_side["tokenizer"]
    expected = theirs.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    got = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    got = got["input_ids"] if isinstance(got, dict) or hasattr(got, "keys") else got
    assert list(got) == list(expected)
    ids = torch.tensor([list(got)])
    reply = ours.generate(ids, max_new_tokens=24, do_sample=False)
    assert reply.tolist() == transformers_side["model"].generate(ids, max_new_tokens=24, do_sample=False).tolist()


def test_int8_after_gguf_load(path, ours, tokenizer):
    """Dequantized 4-bit weights rounded again to int8 per channel (double rounding): decoding still mostly picks
    the tokens of the dequantized fp32 model."""
    quantized = AutoModelForCausalLM.from_pretrained(path, quantize="int8")
    agree, total = agreement(quantized, ours, tokenizer)
    assert agree / total >= 0.5, f"int8 agreed on {agree} of {total} greedy tokens before diverging"


def test_int4_after_gguf_load(path, ours, tokenizer):
    """quantize="int4" keeps the file's own 4-bit grid for the Q4_1 blocks (only their scales are rounded to
    bfloat16) and the Q8_0 head as int8: decoding mostly picks the tokens of the dequantized fp32 model."""
    from triformers.layers.int4 import Int4Linear, available

    if not available():
        pytest.skip("this PyTorch has no CPU int4 kernels")
    quantized = AutoModelForCausalLM.from_pretrained(path, quantize="int4")
    assert sum(isinstance(m, Int4Linear) for m in quantized.modules()) >= 30 * 4
    agree, total = agreement(quantized, ours, tokenizer)
    assert agree / total >= 0.5, f"int4 agreed on {agree} of {total} greedy tokens before diverging"


def test_readme_snippet_runs(path, monkeypatch, capsys):
    """The README's GGUF snippet, as written, from the repository root."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = re.search(r"### GGUF files.*?```python\n(.*?)```", readme, re.S).group(1)
    assets = path.parent.parent
    if assets.name != ".assets":
        pytest.skip("the README's paths assume the assets in .assets/")
    monkeypatch.chdir(assets.parent)
    exec(compile(snippet, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("The capital of France is")


def agreement(model, reference, tokenizer, new_tokens: int = 32) -> tuple[int, int]:
    """(greedy tokens `model` picks as `reference` does before the first difference, tokens `reference` picked),
    summed over PROMPTS."""
    agree = total = 0
    for prompt in PROMPTS:
        batch = tokenizer(prompt, return_tensors="pt")
        start = batch["input_ids"].shape[1]
        expected = reference.generate(**batch, max_new_tokens=new_tokens, do_sample=False)[0, start:].tolist()
        got = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False)[0, start:].tolist()
        same = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                    min(len(got), len(expected)))
        agree, total = agree + same, total + len(expected)
    return agree, total
