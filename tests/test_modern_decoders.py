"""Today's decoders (llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi3, gpt_neox, opt) against
transformers==5.24.0 as the oracle: tiny random checkpoints (tests/decoder_assets.py) loaded through the Auto
classes, every head transformers has for the model type, left-padded batches with a hole.

Tolerance: fp32 outputs agree to atol 1e-5, rtol 0, on non-pad positions; the logits here are of size ~1-10
(at most ~30 for none of them), where the two libraries' differently ordered float ops (SDPA vs eager
matmul + softmax, fused vs separate projections) leave ~1e-6. Pad positions are excluded: both produce
arbitrary values for queries whose every key is masked. Token ids must be equal.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from decoder_assets import CONFIGS, build, heads_of, left_padded, model_type
from triformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering,
                        AutoModelForSequenceClassification, AutoModelForTokenClassification)

ATOL = 1e-5
OURS = {"base": AutoModel, "lm": AutoModelForCausalLM, "sequence_classification": AutoModelForSequenceClassification,
        "token_classification": AutoModelForTokenClassification, "question_answering": AutoModelForQuestionAnswering}
CASES = [(kind, head) for kind in CONFIGS for head in heads_of(kind)]
# keys a save writes about itself
SAVER_KEYS = {"architectures", "transformers_version", "dtype", "torch_dtype"}


def assert_close_on(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> None:
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)


def outputs(out, head: str) -> list[torch.Tensor]:
    if head == "base":
        return [out.last_hidden_state]
    if head == "question_answering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("kind, head", CASES)
@torch.no_grad()
def test_parity_with_left_padding(kind, head, tmp_path):
    theirs = build(kind, head, tmp_path)
    ours = OURS[head].from_pretrained(tmp_path)
    assert ours.config.model_type == model_type(kind)
    ids, mask = left_padded()
    expected, got = theirs(input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask)
    for mine, want in zip(outputs(got, head), outputs(expected, head), strict=True):
        if head == "sequence_classification":  # one row per sequence, read at the last non-pad token
            torch.testing.assert_close(mine, want, atol=ATOL, rtol=0)
        else:
            assert_close_on(mine, want, mask)


@pytest.mark.parametrize("kind", list(CONFIGS))
@torch.no_grad()
def test_greedy_and_beam_tokens_equal_transformers(kind, tmp_path):
    build(kind, "lm", tmp_path)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded()
    for options in (dict(do_sample=False), dict(num_beams=3, num_return_sequences=2, do_sample=False)):
        # a fresh transformers model per call: dynamic rope keeps its grown frequencies as module state
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        args = dict(attention_mask=mask, max_new_tokens=8, min_new_tokens=8, pad_token_id=0, **options)
        assert torch.equal(ours.generate(ids, **args), theirs.generate(ids, **args)), options


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "gemma2", "gemma3_text", "phi3", "opt"])
@torch.no_grad()
def test_cached_equals_uncached_and_static(kind, tmp_path):
    """(Not dynamic rope: re-encoding every position with the grown base, as an uncached step does, is another
    function than keeping the keys of earlier steps; transformers differs the same way, see below.)"""
    build(kind, "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded()
    args = dict(attention_mask=mask, max_new_tokens=9, min_new_tokens=9, pad_token_id=0)
    cached = model.generate(ids, **args)
    assert torch.equal(model.generate(ids, use_cache=False, **args), cached)
    assert torch.equal(model.generate(ids, cache_implementation="static", **args), cached)
    beams = dict(args, num_beams=3)
    assert torch.equal(model.generate(ids, cache_implementation="static", **beams), model.generate(ids, **beams))


@pytest.mark.parametrize("kind", ["phi3", "llama_dynamic"])
@torch.no_grad()
def test_length_dependent_rope_across_its_threshold(kind, tmp_path):
    """A prompt inside the pre-training length that generation carries past it: longrope switches to its long
    factors, dynamic NTK starts growing its base, from the step that crosses, as transformers does; without a
    cache each step re-encodes everything at its own length, as transformers' does too."""
    build(kind, "lm", tmp_path)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded(length=7)  # the longest row's positions 0..6: inside both pre-training lengths (8)
    for use_cache in (True, False):
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        args = dict(attention_mask=mask, max_new_tokens=12, min_new_tokens=12, pad_token_id=0, do_sample=False,
                    use_cache=use_cache)
        assert torch.equal(ours.generate(ids, **args), theirs.generate(ids, **args)), use_cache


@pytest.mark.parametrize("kind", list(CONFIGS))
@torch.no_grad()
def test_saved_folder_loads_in_transformers_with_the_same_logits_and_keys(kind, tmp_path):
    theirs = build(kind, "lm", tmp_path / "theirs")
    AutoModelForCausalLM.from_pretrained(tmp_path / "theirs").save_pretrained(tmp_path / "ours")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask = left_padded()
    assert_close_on(reloaded(input_ids=ids, attention_mask=mask).logits,
                    theirs(input_ids=ids, attention_mask=mask).logits, mask)
    original, written = (json.loads((tmp_path / side / "config.json").read_text()) for side in ("theirs", "ours"))
    assert {k: v for k, v in written.items() if k not in SAVER_KEYS} == \
        {k: v for k, v in original.items() if k not in SAVER_KEYS}
    assert written["architectures"] == original["architectures"]


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gemma2"])
@torch.no_grad()
def test_a_config_built_from_scratch_saves_as_transformers_reads_it(kind, tmp_path):
    """AutoConfig.for_model + from_config: what triformers writes, transformers loads to the same logits."""
    hf = CONFIGS[kind]().to_dict()
    keys = {k: v for k, v in hf.items() if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                  "num_attention_heads", "num_key_value_heads", "head_dim",
                                                  "rope_parameters", "sliding_window", "pad_token_id")}
    config = AutoConfig.for_model(model_type(kind), **keys)
    ours = AutoModelForCausalLM.from_config(config).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids, mask = left_padded()
    assert_close_on(ours(input_ids=ids, attention_mask=mask).logits, theirs(input_ids=ids, attention_mask=mask).logits,
                    mask)


@torch.no_grad()
def test_incremental_forwards_through_a_windowed_cache_equal_one_forward(tmp_path):
    """A user's own incremental calls (several tokens after a cached past, then one) through Mistral's ring of
    window slots: the logits of one uncached forward over everything."""
    from triformers.layers import KVCache

    build("mistral", "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, _ = left_padded(length=14)
    full = model(ids).logits
    cache = KVCache.for_layers([b.attn for b in model.decoder.layers], 3, 14, torch.float32)
    assert cache.window == 4 and cache.ring_k.shape[3] == 4 and cache.k.shape[0] == 0  # bounded by the window
    pieces = [model(ids[:, a:b], cache=cache).logits for a, b in ((0, 6), (6, 11), (11, 12), (12, 14))]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=ATOL, rtol=0)


def test_gemma3_keeps_full_layers_whole_and_sliding_layers_in_a_ring(tmp_path):
    build("gemma3_text", "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    from triformers.generation.runner import Runner

    ids, mask = left_padded()
    runner = Runner(model, ids, mask, True, ids.shape[1] + 8, True)
    assert runner.cache.k.shape[:4] == (1, 3, 2, 19)  # the one full-attention layer: every position, 2 kv heads
    assert runner.cache.ring_k.shape[:4] == (2, 3, 2, 4)  # the two sliding ones: a window each


@pytest.mark.parametrize("kind", ["llama", "gemma", "gpt_neox", "opt"])
def test_training_loss_and_gradients_match_transformers(kind, tmp_path):
    theirs = build(kind, "lm", tmp_path)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    theirs.train()
    for module in (ours, theirs):  # dropout off, so that the two compute one function
        for m in module.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    ids, mask = left_padded()
    # no loss on pads, nor on a token predicted from a pad (whose query sees no key: arbitrary logits in both)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, 1:] = labels[:, 1:].masked_fill(mask[:, :-1] == 0, -100)
    loss = ours(input_ids=ids, attention_mask=mask, labels=labels).loss
    expected = theirs(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    loss.backward()
    expected.backward()
    ours_grad = ours.embed_tokens.weight.grad
    theirs_grad = theirs.get_input_embeddings().weight.grad
    torch.testing.assert_close(ours_grad, theirs_grad, atol=1e-5, rtol=1e-4)


def v4_layout(kind: str, config: dict) -> dict:
    """The same config as a transformers 4 file writes it: `rope_theta` (NeoX: `rotary_emb_base`) and
    `rope_scaling` at the top level, the rotated share as `partial_rotary_factor` (NeoX: `rotary_pct`); Gemma 3's
    sliding layers' base as `rope_local_base_freq`. The scaling's type is spelled "type" (Llama 2 era files) except
    for Gemma 3, whose files say "rope_type": transformers 5.24 merges a Gemma 3 `rope_scaling` into a dict that
    already has rope_type "default", so it would ignore an old "type" key (triformers reads it)."""
    config = dict(config)
    params = config.pop("rope_parameters")
    if model_type(kind) == "gemma3_text":
        params, sliding = dict(params["full_attention"]), params["sliding_attention"]
        config["rope_local_base_freq"] = sliding["rope_theta"]
    else:
        params = dict(params)
    config["rotary_emb_base" if kind.startswith("gpt_neox") else "rope_theta"] = params.pop("rope_theta")
    share = params.pop("partial_rotary_factor", None)
    if share is not None:
        config["rotary_pct" if kind.startswith("gpt_neox") else "partial_rotary_factor"] = share
    kind_name = params.pop("rope_type")
    spelling = "rope_type" if model_type(kind) == "gemma3_text" else "type"
    config["rope_scaling"] = None if kind_name == "default" and not params else {spelling: kind_name, **params}
    return config


ROPE_KINDS = [kind for kind in CONFIGS if not kind.startswith("opt")]


@pytest.mark.parametrize("kind", ROPE_KINDS)
@torch.no_grad()
def test_v4_and_v5_config_layouts_read_the_same(kind, tmp_path):
    """A v5 folder (rope_parameters) and the same folder rewritten in the v4 layout give one ModelConfig and the
    same logits; what triformers saves from the v4 one, transformers reads to those logits too."""
    theirs = build(kind, "lm", tmp_path / "v5")
    v5 = json.loads((tmp_path / "v5" / "config.json").read_text())
    (tmp_path / "v4").mkdir()
    (tmp_path / "v4" / "config.json").write_text(json.dumps(v4_layout(kind, v5)))
    (tmp_path / "v4" / "model.safetensors").write_bytes((tmp_path / "v5" / "model.safetensors").read_bytes())
    new, old = AutoConfig.from_pretrained(tmp_path / "v5"), AutoConfig.from_pretrained(tmp_path / "v4")
    assert (new.rope_theta, new.rope_scaling, new.rotary_fraction, new.local_rope_theta) == \
        (old.rope_theta, old.rope_scaling, old.rotary_fraction, old.local_rope_theta)
    ids, mask = left_padded()
    want = theirs(input_ids=ids, attention_mask=mask).logits
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "v4")
    assert_close_on(model(input_ids=ids, attention_mask=mask).logits, want, mask)
    model.save_pretrained(tmp_path / "saved")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert_close_on(reloaded(input_ids=ids, attention_mask=mask).logits, want, mask)


@pytest.mark.parametrize("layout", ["v4", "v5", "v5 nested"])
def test_an_unknown_rope_type_is_a_config_error(layout, tmp_path):
    from triformers.errors import ConfigError

    kind = "gemma3_text" if layout == "v5 nested" else "llama"
    config = CONFIGS[kind]().to_dict()
    unknown = {"rope_type": "ntk_by_parts_v9", "rope_theta": 1e4, "factor": 2.0}
    if layout == "v4":
        config.pop("rope_parameters")
        config.update(rope_theta=1e4, rope_scaling={"type": "ntk_by_parts_v9", "factor": 2.0})
    elif layout == "v5":
        config["rope_parameters"] = unknown
    else:
        config["rope_parameters"]["full_attention"] = unknown
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="ntk_by_parts_v9"):
        AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("kind, window", [("mistral", None), ("mistral", 20), ("gemma3_text", None)])
def test_past_key_values_grown_past_the_window_equal_one_forward(kind, window, tmp_path):
    """transformers-style incremental decoding (`past_key_values=DynamicCache()`, `use_cache=True`) on a
    sliding-window model: the cache grows by doubling, its windowed layers move into a ring as it outgrows the
    window, and the logits stay those of one uncached forward."""
    from triformers.models.surface import DynamicCache

    build(kind, "lm", tmp_path)
    # window 20: the first 16 slots hold it whole, the doubled cache turns its layers into a ring
    model = AutoModelForCausalLM.from_pretrained(tmp_path, **({"sliding_window": window} if window else {}))
    ids = torch.randint(3, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    full = model(ids).logits
    cache, pieces = DynamicCache(), []
    for a, b in ((0, 3), *((t, t + 1) for t in range(3, 24))):  # a short prompt, then one token at a time
        out = model(ids[:, a:b], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        pieces.append(out.logits)
    assert cache.max_length >= 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=ATOL, rtol=0)
