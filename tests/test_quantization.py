"""Weight-only int8 and int4: logits stay close to fp32, weights take a quarter (an eighth) of the bytes, heads
included; int4 keeps the grid of weights that are already 4-bit (GGUF Q4_0 / Q4_1 / Q4_K blocks)."""

import numpy as np
import pytest
import torch
import transformers

from triformers import AutoModelForCausalLM
from triformers.layers.int4 import Int4Linear, available, quantize_groups
from triformers.layers.int8 import Int8Linear


def _gpt2(tmp_path, width=48):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=311, n_embd=width, n_layer=2, n_head=3 if width == 48 else 4,
                                     n_positions=40, bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    return tmp_path


def test_int8_logits_close_and_weights_small(tmp_path):
    path = _gpt2(tmp_path)
    full = AutoModelForCausalLM.from_pretrained(path)
    quant = AutoModelForCausalLM.from_pretrained(path, quantize="int8")
    linears = [m for m in quant.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 2 * 4 + 1  # qkv, out, up, down per layer + the (tied) LM head
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())
    ids = torch.randint(0, 311, (2, 17))
    with torch.no_grad():
        a, b = full(input_ids=ids).logits, quant(input_ids=ids).logits
    # per-channel int8 rounding error is at most scale/2 per weight: logits move by ~1% of their range
    assert (a - b).abs().max() < 0.02 * a.abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.95
    int8_bytes = sum(m.weight_int8.numel() for m in linears)
    fp32_bytes = sum(p.numel() * 4 for n, p in full.named_parameters() if n.endswith("weight") and p.dim() == 2
                     and "embed" not in n and "positions" not in n) + full.embed_tokens.weight.numel() * 4
    assert int8_bytes * 4 == fp32_bytes


def test_rejects_unknown_scheme(tmp_path):
    from triformers import ConfigError

    with pytest.raises(ConfigError, match="quantize"):
        AutoModelForCausalLM.from_pretrained(_gpt2(tmp_path), quantize="nf4")


needs_int4 = pytest.mark.skipif(not available(), reason="this PyTorch has no CPU int4 kernels")


def _gguf_4bit(type_name: str, shape=(64, 512)) -> torch.Tensor:
    """A weight as a 4-bit GGUF file holds it: quantized by gguf (K-quants: random valid blocks), dequantized."""
    from gguf_assets import Q, gguf, quantized_blocks

    rng = np.random.default_rng(0)
    blocks = quantized_blocks(rng.standard_normal(shape).astype(np.float32) * 0.05, Q[type_name], rng)
    return torch.from_numpy(gguf.quants.dequantize(blocks, Q[type_name]).copy())


@needs_int4
@pytest.mark.parametrize("type_name", ["Q4_0", "Q4_1", "Q4_K"])
def test_int4_keeps_the_grid_of_4bit_weights(type_name):
    """A 4-bit file's weights come back exactly (fp32 scales); the kernel's bf16 scales move them by <0.5%."""
    weight = _gguf_4bit(type_name)
    codes, scale, zero = quantize_groups(weight)
    rebuilt = ((codes.reshape(64, -1, 32) - 8) * scale[..., None] + zero[..., None]).reshape(weight.shape)
    torch.testing.assert_close(rebuilt, weight, atol=1e-6 * float(weight.abs().max()), rtol=0)
    layer = Int4Linear(weight)
    assert float((layer.dequantized() - weight).norm() / weight.norm()) < 5e-3


@needs_int4
def test_int4_rounds_other_weights_to_nearest_and_multiplies_as_dequantized():
    torch.manual_seed(0)
    weight, x = torch.randn(48, 256), torch.randn(5, 256)
    codes, scale, zero = quantize_groups(weight)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15
    rebuilt = ((codes.reshape(48, -1, 32) - 8) * scale[..., None] + zero[..., None]).reshape(weight.shape)
    assert bool(((rebuilt - weight).abs() <= scale.repeat_interleave(32, dim=1) / 2 + 1e-6).all())
    layer = Int4Linear(weight, torch.randn(48))
    expected = x.bfloat16().float() @ layer.dequantized().t() + layer.bias
    # the kernel rounds to bfloat16 (8 bits of mantissa) on the way: 1% of the outputs' range
    torch.testing.assert_close(layer(x), expected, atol=0.01 * float(expected.abs().max()), rtol=0)
    assert layer(x[None]).shape == (1, 5, 48)


@needs_int4
def test_int4_model_blocks_4bit_head_int8(tmp_path):
    path = _gpt2(tmp_path, width=64)
    full = AutoModelForCausalLM.from_pretrained(path)
    quant = AutoModelForCausalLM.from_pretrained(path, quantize="int4")
    assert sum(isinstance(m, Int4Linear) for m in quant.modules()) == 2 * 4
    assert isinstance(quant.lm_head, Int8Linear)  # the tied head: its own int8 copy
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())
    ids = torch.randint(0, 311, (2, 17))
    with torch.no_grad():
        a, b = full(input_ids=ids).logits, quant(input_ids=ids).logits
    # min/max rounding to 16 levels per group of 32 moves each weight by up to 1/30 of its group's range
    assert (a - b).abs().max() < 0.1 * a.abs().max()
    out = quant.generate(ids[:1, :5], max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 9)
    narrow = AutoModelForCausalLM.from_pretrained(_gpt2(tmp_path / "narrow"), quantize="int4")  # width 48
    kinds = {(type(m).__name__, m.in_features) for m in narrow.modules() if isinstance(m, (Int4Linear, Int8Linear))}
    assert kinds == {("Int8Linear", 48), ("Int4Linear", 192)}  # 48 inputs hold no whole group of 32: int8
