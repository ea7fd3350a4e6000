"""Decoder-only family (GPT-2, BLOOM) against transformers==5.24.0 as the oracle.

Tiny random transformers models (odd sizes; BLOOM with 6 heads so ALiBi's non-power-of-two slope
series runs, and with 4 heads) are saved to a temp folder and loaded through triformers' Auto classes.
Every parameter is redrawn with a large spread first: transformers initialises biases to 0 and norms to
1, which would hide a wrong bias layout (BLOOM's per-head q|k|v interleave) or a swapped norm.

Tolerance: fp32 outputs agree to atol 1e-5 (rtol 0) on non-pad positions; the models compute the same
function with differently ordered float ops (SDPA vs. baddbmm + softmax), whose rounding differences
are ~1e-7 at these logit scales (~1-10), so 1e-5 leaves margin yet catches any real difference.
Pad positions are excluded: transformers and triformers both produce arbitrary values for queries whose
every key is masked.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from triformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)
from triformers.errors import ConfigError, InputError
from triformers.layers import KVCache

VOCAB = 97
N_POSITIONS = 29  # GPT-2's learned position table (the length limit)
CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=35, n_layer=2, n_head=5, n_inner=53,
                                            n_positions=N_POSITIONS, resid_pdrop=0, embd_pdrop=0,
                                            attn_pdrop=0, pad_token_id=0, num_labels=3),
    "bloom6": lambda: transformers.BloomConfig(vocab_size=VOCAB, hidden_size=42, n_layer=2, n_head=6,
                                               pad_token_id=0, num_labels=3),
    "bloom4": lambda: transformers.BloomConfig(vocab_size=VOCAB, hidden_size=36, n_layer=2, n_head=4,
                                               pad_token_id=0, num_labels=3),
}
HEADS = {
    "lm": (transformers.AutoModelForCausalLM, AutoModelForCausalLM),
    "base": (transformers.AutoModel, AutoModel),
    "sequence_classification": (transformers.AutoModelForSequenceClassification, AutoModelForSequenceClassification),
}
ATOL = 1e-5


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Redraw every parameter: weights N(0, 0.15), biases N(0, 0.1), norm scales 1 + N(0, 0.1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_scale = ("norm" in name or ".ln_" in name) and name.endswith("weight")
            if is_norm_scale:
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_((0.15 if param.dim() > 1 else 0.1) * noise)


def hf_model(kind: str, head: str, folder, seed: int = 0) -> torch.nn.Module:
    """A random transformers model of this kind and head, saved to `folder`; returned in eval()."""
    torch.manual_seed(seed)
    model = HEADS[head][0].from_config(CONFIGS[kind]()).eval()
    randomize(model, seed)
    model.save_pretrained(folder)
    return model


def left_padded_batch(length: int = 9, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, length) ids and mask (pad id 0): rows 1 and 2 left-padded by 3 and 6; row 0 has a hole at 2..3.

    The hole is what tells ALiBi positions counted over non-pad tokens (BLOOM) from plain indices: with
    left padding alone the two differ by a constant per row, which softmax cannot see.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 2:4] = 0
    mask[1, :3] = 0
    mask[2, :6] = 0
    return ids.masked_fill(mask == 0, 0), mask


def generate_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as transformers' generate builds them for a left-padded batch."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def assert_close_on(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> None:
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("head", list(HEADS))
def test_parity_with_left_padding(kind, head, tmp_path):
    theirs = hf_model(kind, head, tmp_path)
    ours = HEADS[head][1].from_pretrained(tmp_path)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        expected, got = theirs(input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask)
    if head == "base":
        assert_close_on(got.last_hidden_state, expected.last_hidden_state, mask)
    elif head == "lm":
        assert_close_on(got.logits, expected.logits, mask)
    else:  # one row per sequence, read at the last non-pad token
        assert got.logits.shape == (3, 3)
        torch.testing.assert_close(got.logits, expected.logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["gpt2", "bloom6"])
def test_cached_decoding_equals_full_recomputation(kind, tmp_path):
    theirs = hf_model(kind, "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(length=7)
    steps = 4
    config = model.config
    cache = KVCache(config.num_layers, 3, config.num_heads, config.attention_head_dim, 7 + steps, torch.float32)
    # GPT-2 learns absolute positions: pass them counted from the first real token, as generate does;
    # BLOOM's ALiBi derives them from the mask itself.
    positions = (lambda m: generate_positions(m)) if kind == "gpt2" else (lambda m: None)
    with torch.no_grad():
        pos = positions(mask)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache).logits
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        assert_close_on(logits, full, mask)
        for _ in range(steps):
            token = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1): greedy, as generation would
            ids = torch.cat([ids, token], 1)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            pos = positions(mask)
            logits = model(input_ids=token, attention_mask=mask, position_ids=None if pos is None else pos[:, -1:],
                           cache=cache).logits  # (B, 1, V)
            full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            oracle = theirs(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            torch.testing.assert_close(logits[:, -1], full[:, -1], atol=ATOL, rtol=0)
            torch.testing.assert_close(logits[:, -1], oracle[:, -1], atol=ATOL, rtol=0)
    assert cache.length == 7 + steps


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("head", ["lm", "sequence_classification"])
def test_save_load_both_directions(kind, head, tmp_path):
    hf_dir, ours_dir = tmp_path / "hf", tmp_path / "ours"
    theirs = hf_model(kind, head, hf_dir)
    ours = HEADS[head][1].from_pretrained(hf_dir)  # transformers save -> triformers load
    ours.save_pretrained(ours_dir)
    reloaded = HEADS[head][0].from_pretrained(ours_dir).eval()  # triformers save -> transformers load
    ids, mask = left_padded_batch()
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask).logits
        b = reloaded(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(b, a, atol=0, rtol=0)  # the same tensors: bit-identical
    original, written = (json.loads((d / "config.json").read_text()) for d in (hf_dir, ours_dir))
    assert written["model_type"] == original["model_type"]
    assert written["architectures"] == original["architectures"]
    sizes = [k for k in ("vocab_size", "n_layer", "n_head", "n_embd", "n_inner", "hidden_size", "n_positions",
                         "pad_token_id", "layer_norm_epsilon", "id2label") if k in original]
    assert len(sizes) >= 6, sizes
    assert {k: written.get(k) for k in sizes} == {k: original[k] for k in sizes}


@pytest.mark.parametrize("model_type,sizes", [("bloom", dict(hidden_size=30, n_layer=2, n_head=6)),
                                              ("gpt2", dict(n_embd=33, n_layer=2, n_head=3, n_positions=19))])
def test_model_from_config_saves_what_transformers_loads(model_type, sizes, tmp_path):
    config = AutoConfig.for_model(model_type, vocab_size=VOCAB, **sizes)
    assert config.model_type == model_type
    model = AutoModelForCausalLM.from_config(config).eval()
    randomize(model, seed=3)  # non-zero biases: a wrong q|k|v bias layout on save must show
    model.save_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids, mask = left_padded_batch()
    with torch.no_grad():
        assert_close_on(model(input_ids=ids, attention_mask=mask).logits,
                        theirs(input_ids=ids, attention_mask=mask).logits, mask)


@pytest.mark.parametrize("kind", ["gpt2", "bloom6"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_loss_matches_transformers(kind, side, tmp_path):
    theirs = hf_model(kind, "lm", tmp_path)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch()
    if side == "right":  # the training layout: real tokens first, pads after
        order = torch.argsort(1 - mask, dim=1, stable=True)
        ids, mask = ids.gather(1, order), mask.gather(1, order)
    labels = ids.masked_fill(mask == 0, -100)
    if side == "left":
        # The first real token is predicted from the last pad query, which attends to no key: its output
        # is undefined (transformers' default SDPA path lets such rows attend everywhere, its eager path
        # and triformers give uniform weights), so that one label is left out too.
        first = mask.argmax(1)
        labels[torch.arange(3), first] = -100
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels).loss
        got = ours(input_ids=ids, attention_mask=mask, labels=labels).loss
        unlabeled = ours(input_ids=ids, attention_mask=mask).loss
    assert unlabeled is None
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["gpt2", "bloom6"])
def test_bfloat16_stays_close_to_fp32(kind, tmp_path):
    hf_model(kind, "lm", tmp_path)
    full = AutoModelForCausalLM.from_pretrained(tmp_path)
    half = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    ids, mask = left_padded_batch()
    with torch.no_grad():
        reference = full(input_ids=ids, attention_mask=mask).logits[mask.bool()]
        low = half(input_ids=ids, attention_mask=mask).logits
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits (relative step 2**-8 ~ 0.4%); through two blocks the largest error
    # measured here is 0.6-0.8% of max|logit| (~5), so 3% of max|logit| leaves a 4x margin, while a
    # broken half-precision path (a mask or bias in the wrong dtype) is off by the logit scale itself.
    error = (low[mask.bool()].float() - reference).abs().max()
    assert error <= 0.03 * reference.abs().max(), (error, reference.abs().max())


def test_gpt2_input_longer_than_positions_is_refused(tmp_path):
    hf_model("gpt2", "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.max_length() == N_POSITIONS
    with pytest.raises(InputError, match=f"at most {N_POSITIONS}"):
        model(input_ids=torch.ones(1, N_POSITIONS + 1, dtype=torch.long))
    cache = KVCache(2, 1, 5, 7, N_POSITIONS + 1, torch.float32)
    model(input_ids=torch.ones(1, N_POSITIONS, dtype=torch.long), cache=cache)  # exactly the limit is fine
    with pytest.raises(InputError, match=f"{N_POSITIONS + 1} positions"):  # past + new counts
        model(input_ids=torch.ones(1, 1, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("kind", ["gpt2", "bloom4"])
def test_token_outside_vocabulary_is_refused(kind, tmp_path):
    hf_model(kind, "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, _ = left_padded_batch()
    ids[1, 4] = VOCAB
    with pytest.raises(InputError, match=r"input_ids\[1, 4\] = 97 is outside the vocabulary"):
        model(input_ids=ids)


def test_bloom_has_no_length_limit(tmp_path):
    hf_model("bloom4", "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.positions == "alibi" and model.config.max_positions == 0
    assert model.max_length() is None
    assert model(input_ids=torch.ones(1, 300, dtype=torch.long)).logits.shape == (1, 300, VOCAB)


def test_bloom_refuses_post_layernorm_residual(tmp_path):
    hf_model("bloom4", "base", tmp_path)
    with pytest.raises(ConfigError, match="apply_residual_connection_post_layernorm"):
        AutoModel.from_pretrained(tmp_path, apply_residual_connection_post_layernorm=True)


def test_bloom_untied_lm_head_loads_and_saves(tmp_path):
    torch.manual_seed(0)
    theirs = transformers.BloomForCausalLM(transformers.BloomConfig(
        vocab_size=VOCAB, hidden_size=30, n_layer=1, n_head=3, tie_word_embeddings=False)).eval()
    randomize(theirs)
    assert not torch.equal(theirs.lm_head.weight, theirs.transformer.word_embeddings.weight)
    theirs.save_pretrained(tmp_path / "hf")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert ours.lm_head is not None
    ours.save_pretrained(tmp_path / "ours")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask = left_padded_batch()
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask).logits
        assert_close_on(ours(input_ids=ids, attention_mask=mask).logits, expected, mask)
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, expected, atol=0, rtol=0)
