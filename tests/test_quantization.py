"""Weight-only int8: logits stay close to fp32, weights take a quarter of the bytes, heads included."""

import torch
import transformers

from triformers import AutoModelForCausalLM
from triformers.layers.int8 import Int8Linear


def _gpt2(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=311, n_embd=48, n_layer=2, n_head=3, n_positions=40,
                                     bos_token_id=0, eos_token_id=0)
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


def test_int8_rejects_unknown_scheme(tmp_path):
    import pytest

    from triformers import ConfigError

    with pytest.raises(ConfigError, match="quantize"):
        AutoModelForCausalLM.from_pretrained(_gpt2(tmp_path), quantize="int4")
