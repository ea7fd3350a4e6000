"""Encoder-decoder parity with transformers 5.24: T5 v1.0, T5 v1.1 (gated-gelu, untied head) and BART.

Each checkpoint is a tiny random transformers model with odd sizes (d_model 48, d_kv 10 != 48/3,
3 heads, d_ff 70, 2 encoder and 3 decoder layers, vocab 203) whose every weight is perturbed, so that
a swapped norm, bias or projection shows. Logits are compared in fp32 with atol 1e-5: both sides do
the same math in a different order (fused q|k|v, SDPA), which moves results by ~1e-6, while any real
mistake (a wrong bucket, a missing scale, a misplaced norm) moves them by far more.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tr
from safetensors.torch import load_file, save_file

import triformers
from triformers.errors import ConfigError
from triformers.layers import KVCache

ATOL = dict(atol=1e-5, rtol=0)
VOCAB, D_MODEL = 203, 48
T5_SIZES = dict(vocab_size=VOCAB, d_model=D_MODEL, d_kv=10, num_heads=3, d_ff=70, num_layers=2,
                num_decoder_layers=3, relative_attention_num_buckets=10, relative_attention_max_distance=17,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART_SIZES = dict(vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=2, decoder_layers=3, encoder_attention_heads=3,
                  decoder_attention_heads=3, encoder_ffn_dim=70, decoder_ffn_dim=70, max_position_embeddings=37,
                  scale_embedding=True, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
KINDS = ("t5_v1_0", "t5_v1_1", "bart")


def perturb(model: torch.nn.Module) -> None:
    """Move every weight so that names must match: constant ones (norms to 1 +- 0.1, zero biases,
    final_logits_bias) by 0.1, random ones by half their own spread (T5's q/k are tiny: std ~0.05)."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for n, b in model.named_buffers() if n == "final_logits_bias"]:
            spread = float(tensor.std()) if tensor.numel() > 1 else 0.0
            tensor.add_((0.5 * spread if spread > 0 else 0.1) * torch.randn_like(tensor))


def build(kind: str, folder, head: str = "lm"):
    """A tiny random transformers model of `kind`, saved to `folder`; returns it reloaded, in eval()."""
    torch.manual_seed(KINDS.index(kind))
    if kind == "bart":
        config = tr.BartConfig(**BART_SIZES, num_labels=3)
        cls = tr.BartForSequenceClassification if head == "sequence_classification" else \
            tr.BartForConditionalGeneration if head == "lm" else tr.BartModel
    else:
        config = tr.T5Config(**T5_SIZES, feed_forward_proj="relu" if kind == "t5_v1_0" else "gated-gelu")
        cls = tr.T5ForConditionalGeneration if head == "lm" else tr.T5Model
    model = cls(config)
    perturb(model)
    model.save_pretrained(folder)
    if kind == "t5_v1_1":  # real v1.1 layout: its own lm_head and tie_word_embeddings false (no scaling)
        tensors = load_file(folder / "model.safetensors")
        # std 0.2, not transformers' init of 1.0: torch's tanh GELU differs from transformers' `gelu_new`
        # formula by <= 5e-7 per element, which a std-1 head turns into 1.2e-5 on logits of size 28
        tensors["lm_head.weight"] = 0.2 * torch.randn(VOCAB, D_MODEL)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        hf_config = json.loads((folder / "config.json").read_text())
        hf_config["tie_word_embeddings"] = False
        hf_config.pop("scale_decoder_outputs", None)
        (folder / "config.json").write_text(json.dumps(hf_config))
    model = cls.from_pretrained(folder).eval()
    if kind == "t5_v1_1" and head == "lm":  # the layout this test means to cover
        assert model.lm_head.weight is not model.shared.weight and not model.config.scale_decoder_outputs
    if kind == "t5_v1_0":
        assert model.config.scale_decoder_outputs
    return model


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, folder, build(request.param, folder)


def batch(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded encoder inputs ending in EOS, and labels with -100 after each target's end."""
    pad, eos = (1, 2) if kind == "bart" else (0, 1)
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (3, 13), generator=g)
    labels = torch.randint(3, VOCAB, (3, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for row, (source_len, target_len) in enumerate(((13, 9), (8, 5), (11, 7))):
        input_ids[row, source_len - 1] = eos
        input_ids[row, source_len:] = pad
        attention_mask[row, source_len:] = 0
        labels[row, target_len:] = -100
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                decoder_attention_mask=labels.ne(-100).long())


@torch.no_grad()
def test_logits_loss_and_encoder_states_match(checkpoint):
    kind, folder, hf = checkpoint
    inputs = batch(kind)
    ours = triformers.AutoModelForSeq2SeqLM.from_pretrained(folder)(**inputs)
    theirs = hf(**inputs)
    torch.testing.assert_close(ours.encoder_last_hidden_state, theirs.encoder_last_hidden_state, **ATOL)
    torch.testing.assert_close(ours.logits, theirs.logits, **ATOL)
    torch.testing.assert_close(ours.loss, theirs.loss, **ATOL)


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_base_model_hidden_states_match(kind, tmp_path):
    hf = build(kind, tmp_path, head=None)
    inputs = batch(kind)
    decoder_input_ids = triformers.models.shift_right(inputs["labels"], 2 if kind == "bart" else 0,
                                                      1 if kind == "bart" else 0)
    args = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                decoder_input_ids=decoder_input_ids, decoder_attention_mask=inputs["decoder_attention_mask"])
    ours = triformers.AutoModel.from_pretrained(tmp_path)
    torch.testing.assert_close(ours(**args).last_hidden_state, hf(**args).last_hidden_state, **ATOL)
    if kind == "bart":  # BartModel makes decoder inputs from input_ids when none are given
        short = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        torch.testing.assert_close(ours(**short).last_hidden_state, hf(**short).last_hidden_state, **ATOL)


@torch.no_grad()
def test_bart_sequence_classification_matches(tmp_path):
    hf = build("bart", tmp_path, head="sequence_classification")
    inputs = batch("bart")
    labels = torch.tensor([0, 2, 1])
    ours = triformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert ours.classifier.out.weight.shape == (3, D_MODEL)
    args = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels)
    mine, theirs = ours(**args), hf(**args)
    torch.testing.assert_close(mine.logits, theirs.logits, **ATOL)
    torch.testing.assert_close(mine.loss, theirs.loss, **ATOL)


@torch.no_grad()
def test_cached_decoding_equals_full_pass(checkpoint):
    kind, folder, _ = checkpoint
    model = triformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    config = model.config
    inputs = batch(kind, seed=1)
    decoder_ids = inputs["labels"].clamp(min=3)  # (3, 9), every position real
    encoder_out = model.encode(inputs["input_ids"], inputs["attention_mask"])
    full = model(attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_ids,
                 encoder_outputs=encoder_out).logits
    cache = KVCache(config.decoder_layers, 3, config.num_heads, config.attention_head_dim, 12, torch.float32)
    steps = [(0, 3)] + [(t, t + 1) for t in range(3, 9)]  # a 3-token prefix, then one token at a time
    for start, end in steps:
        step = model(attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_ids[:, start:end],
                     decoder_attention_mask=torch.ones(3, end, dtype=torch.long), encoder_outputs=encoder_out,
                     cache=cache).logits
        torch.testing.assert_close(step, full[:, start:end], **ATOL)
    assert cache.length == 9 and all(kv is not None for kv in cache.cross)


@torch.no_grad()
def test_t5_bf16_stays_finite_with_fp32_wo(tmp_path):
    build("t5_v1_1", tmp_path)
    inputs = batch("t5_v1_1")
    reference = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)(**inputs).logits
    model = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    downs = [m.mlp.down.weight.dtype for stack in (model.encoder, model.decoder) for m in stack.layers]
    assert downs and set(downs) == {torch.float32}
    assert model.decoder.layers[0].mlp.gate_up.weight.dtype == torch.bfloat16  # gate | up, fused
    logits = model(**inputs).logits
    assert torch.isfinite(reference).all() and torch.isfinite(logits).all()
    # bf16 keeps ~3 significant digits; through 5 layers the logits stay within a few percent
    assert (logits.float() - reference).abs().max() < 0.05 * reference.abs().max()


@torch.no_grad()
def test_triformers_save_loads_in_transformers(checkpoint, tmp_path):
    kind, folder, hf = checkpoint
    inputs = batch(kind)
    triformers.AutoModelForSeq2SeqLM.from_pretrained(folder).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    if kind == "t5_v1_1":
        assert saved["tie_word_embeddings"] is False and saved["scale_decoder_outputs"] is False
    cls = tr.BartForConditionalGeneration if kind == "bart" else tr.T5ForConditionalGeneration
    reloaded = cls.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(**inputs).logits, hf(**inputs).logits, **ATOL)
    assert (reloaded.lm_head.weight is reloaded.model.shared.weight if kind == "bart" else
            (reloaded.lm_head.weight is reloaded.shared.weight) == (kind == "t5_v1_0"))


@torch.no_grad()
def test_transformers_resave_loads_in_triformers(checkpoint, tmp_path):
    """transformers 5.24 re-saves an untied T5 with `tie_word_embeddings: true`: the weights decide."""
    kind, _, hf = checkpoint
    hf.save_pretrained(tmp_path)
    inputs = batch(kind)
    ours = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert (ours.lm_head is None) == (kind != "t5_v1_1")
    torch.testing.assert_close(ours(**inputs).logits, hf(**inputs).logits, **ATOL)


def test_bart_classification_save_round_trip(tmp_path):
    hf = build("bart", tmp_path / "hf", head="sequence_classification")
    triformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "ours")
    reloaded = tr.BartForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    inputs = batch("bart")
    args = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**args).logits, hf(**args).logits, **ATOL)


@pytest.mark.parametrize("model_type, keys, message", [
    # the two stacks may differ (see test_config_keys.py), but each must be a valid size
    ("bart", dict(encoder_attention_heads=4, decoder_attention_heads=3, d_model=8), "num_decoder_heads 3"),
    ("bart", dict(encoder_layerdrop=0.1), "encoder_layerdrop=0.1 is not supported"),
    ("bart", dict(tie_word_embeddings=False), "tie_word_embeddings=False is not supported"),
    ("t5", dict(feed_forward_proj="gated-gelu-x"), "feed_forward_proj"),
    ("t5", dict(feed_forward_proj="fancy"), "feed_forward_proj"),
])
def test_unsupported_configs_raise_config_error(model_type, keys, message):
    with pytest.raises(ConfigError, match=message):
        triformers.AutoConfig.for_model(model_type, **keys)


def test_t5_config_translation_mirrors_transformers():
    v10 = triformers.AutoConfig.for_model("t5", d_model=64)
    assert v10.tie_word_embeddings and v10.output_scale == 64 ** -0.5 and v10.decoder_start_token_id == 0
    v11 = triformers.AutoConfig.for_model("t5", feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert not v11.tie_word_embeddings and v11.output_scale == 1.0
    assert (v11.activation, v11.gated_mlp, v11.head_dim) == ("gelu_tanh", True, 64)
    explicit = triformers.AutoConfig.for_model("t5", tie_word_embeddings=True, scale_decoder_outputs=False)
    assert explicit.output_scale == 1.0


def test_bart_without_final_logits_bias_starts_at_zero(tmp_path):
    """transformers lists final_logits_bias as optional on load; a checkpoint without it gets zeros."""
    build("bart", tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["final_logits_bias"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert torch.equal(model.final_logits_bias, torch.zeros(1, VOCAB))


def test_t5_sequence_classification_is_refused_clearly(tmp_path):
    build("t5_v1_0", tmp_path)
    with pytest.raises(ConfigError, match="T5 checkpoints support heads"):
        triformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
