"""generate: token-for-token equality with transformers 5.24's `generate`, and its own guarantees.

Models are tiny random Hugging Face checkpoints built here (odd sizes) with a large
`initializer_range`, so that the best next token wins by a wide margin and fp32 rounding between
the two implementations can never flip an argmax, a beam ranking or a sampled token: the tests
compare ids exactly (no tolerance), which is the contract transformers users rely on.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

import triformers
from triformers.dialects import DIALECTS
from triformers.errors import InputError
from triformers.generation import TextIteratorStreamer, TextStreamer

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*generation flags.*")

VOCAB, POSITIONS, NEW = 97, 40, 9
EOS, PAD = 2, 0


def _save(hf_model, folder) -> str:
    hf_model.eval().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=36, n_layer=3, n_head=3, n_positions=POSITIONS,
                                     initializer_range=0.8, bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    folder = _save(hf, tmp_path_factory.mktemp("gpt2"))
    return hf, triformers.AutoModelForCausalLM.from_pretrained(folder)


def _batch(pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts of lengths 3, 5 and 6, left-padded to 6."""
    lengths = torch.tensor([3, 5, 6])
    mask = (torch.arange(6)[None, :] >= 6 - lengths[:, None]).long()  # (3, 6)
    ids = torch.arange(5, 5 + 18).view(3, 6) % VOCAB
    return ids.masked_fill(mask == 0, pad), mask


def _both(pair, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    hf, ours = pair
    ids, mask = _batch()
    kwargs.setdefault("max_new_tokens", NEW)
    return hf.generate(ids, attention_mask=mask, **kwargs), ours.generate(ids, attention_mask=mask, **kwargs)


def _eos_from_greedy(pair, row: int = 0, step: int = 2) -> int:
    """A token that greedy decoding produces in `row` at new-token `step`: as EOS it ends sequences early."""
    ids, mask = _batch()
    out = pair[1].generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW)
    return int(out[row, ids.shape[1] + step])


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7},
    {"repetition_penalty": 1.3},
    {"no_repeat_ngram_size": 2},
    {"num_beams": 3, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3},
], ids=["greedy", "beam", "repetition", "ngram", "beam-repetition-ngram"])
def test_gpt2_matches_transformers_without_stopping(gpt2, kwargs):
    expected, got = _both(gpt2, min_new_tokens=NEW, **kwargs)  # EOS masked: every row runs to the end
    assert got.shape == (3 * kwargs.get("num_return_sequences", 1), 6 + NEW)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7},
    {"num_beams": 4, "num_return_sequences": 3, "early_stopping": True},
    {"num_beams": 3, "early_stopping": "never", "length_penalty": 1.5},
    {"num_beams": 2, "length_penalty": -0.5, "min_new_tokens": 3},
], ids=["greedy", "beam", "early-true", "early-never", "negative-penalty"])
def test_gpt2_matches_transformers_when_eos_ends_sequences(gpt2, kwargs):
    eos = _eos_from_greedy(gpt2)
    expected, got = _both(gpt2, eos_token_id=[eos, EOS], **kwargs)
    assert torch.equal(got, expected)


def test_eos_stops_each_row_and_pads_after_it(gpt2):
    ids, mask = _batch()
    free = gpt2[1].generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW)[:, 6:]
    eos = _eos_from_greedy(gpt2, row=0, step=2)
    out = gpt2[1].generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    new = out[:, 6:]
    ends = []
    for row in range(3):
        hits = (free[row] == eos).nonzero()
        end = int(hits[0]) + 1 if len(hits) else NEW  # a row stops at its own first EOS, or runs to the end
        ends.append(end)
        assert torch.equal(new[row, :end], free[row, :end])
        assert bool((new[row, end:] == PAD).all())  # and is padded while the others go on
    assert ends[0] == 3 and new.shape[1] == max(ends)  # the batch stops when its last row does


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7}],
                         ids=["greedy", "beam"])
def test_cached_decoding_equals_full_recomputation(gpt2, kwargs):
    ids, mask = _batch()
    cached = gpt2[1].generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW, **kwargs)
    full = gpt2[1].generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW, use_cache=False,
                            **kwargs)
    assert torch.equal(cached, full)


def test_sampling_is_reproducible_and_matches_transformers_rng(gpt2):
    hf, ours = gpt2
    ids, mask = _batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_p=0.8, temperature=0.7)
    first, second = (ours.generate(ids, seed=11, **kwargs) for _ in range(2))
    assert torch.equal(first, second)
    assert torch.equal(ours.generate(ids, generator=torch.Generator().manual_seed(11), **kwargs), first)
    # with the global RNG, the draws are transformers' draws (same processors, same multinomial calls)
    for extra in ({}, {"num_return_sequences": 2, "top_k": 10}, {"num_beams": 3, "top_k": 4}):
        torch.manual_seed(3)
        expected = hf.generate(ids, **kwargs, **extra)
        torch.manual_seed(3)
        assert torch.equal(ours.generate(ids, **kwargs, **extra), expected)


def test_top_k_samples_only_from_the_k_best(gpt2):
    ours, k = gpt2[1], 3
    ids = torch.arange(10, 22).view(3, 4)  # no padding: a plain forward recomputes every step's scores
    out = ours.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=True, top_k=k, temperature=3.0,
                        seed=5)
    logits = ours(out[:, :-1]).logits  # (3, 4 + NEW - 1, V): scores for every next token
    logits[..., EOS] = float("-inf")  # min_new_tokens masks EOS before top-k, so no row stops
    allowed = torch.topk(logits[:, 3:], k, dim=-1).indices  # (3, NEW, k)
    assert bool((allowed == out[:, 4:, None]).any(-1).all())
    # a high temperature spreads the mass: not every sample is the argmax (so the check above can fail)
    assert not torch.equal(out[:, 4:], logits[:, 3:].argmax(-1))


def test_generate_accepts_a_tokenizer_batch(gpt2):
    ids, mask = _batch()
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    expected = gpt2[1].generate(ids, attention_mask=mask, max_new_tokens=4)
    assert torch.equal(gpt2[1].generate(**batch, max_new_tokens=4), expected)


def test_mask_is_inferred_from_padding_like_transformers(gpt2):
    ids, _ = _batch()
    expected = gpt2[0].generate(ids, max_new_tokens=NEW, min_new_tokens=NEW)
    assert torch.equal(gpt2[1].generate(ids, max_new_tokens=NEW, min_new_tokens=NEW), expected)


def test_errors_name_the_bad_argument(gpt2, tmp_path):
    ours = gpt2[1]
    ids, mask = _batch()
    bad = [
        (dict(max_new_tokens=POSITIONS), "exceed the model's 40 positions"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences=3 is more than num_beams=2"),
        (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
        (dict(do_sample=True, top_p=1.5), "top_p must be in (0, 1]"),
        (dict(do_sample=True, top_p=0.0), "top_p must be in (0, 1]"),
        (dict(num_return_sequences=2), "greedy search returns one sequence"),
        (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1"),
        (dict(eos_token_id=VOCAB), "eos_token_id must be token ids in 0..96"),
        (dict(early_stopping="sometimes"), "early_stopping must be"),
        (dict(temprature=0.5), "unknown arguments ['temprature']"),
        (dict(streamer=TextStreamer(_WordTokenizer())), "a streamer follows one sequence"),
    ]
    for kwargs, message in bad:
        with pytest.raises(InputError) as caught:
            ours.generate(ids, attention_mask=mask, **kwargs)
        assert message in str(caught.value), kwargs
    encoder = triformers.AutoModelForMaskedLM.from_pretrained(_save(transformers.BertForMaskedLM(
        transformers.BertConfig(vocab_size=VOCAB, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=20)), tmp_path / "bert"))
    with pytest.raises(InputError, match="encoder-only"):
        encoder.generate(ids, max_new_tokens=2)


class _WordTokenizer:
    """decode(ids) joins one made-up word per id: spaces make the streamer release whole words."""

    def decode(self, ids, **kwargs) -> str:
        return " ".join(f"w{i}" for i in ids)


class _Collect(TextStreamer):
    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.pieces: list[str] = []

    def on_text(self, text: str, stream_end: bool = False) -> None:
        self.pieces.append(text)


def test_streamers_receive_the_decoded_output(gpt2):
    ours, tokenizer = gpt2[1], _WordTokenizer()
    ids = torch.tensor([[7, 8, 9]])
    streamer = _Collect(tokenizer)
    out = ours.generate(ids, max_new_tokens=NEW, streamer=streamer)
    assert "".join(streamer.pieces) == tokenizer.decode(out[0].tolist())
    assert len([p for p in streamer.pieces if p]) > 2  # text arrived step by step, not all at the end

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    worker = threading.Thread(target=lambda: ours.generate(ids, max_new_tokens=NEW, streamer=streamer))
    worker.start()
    text = "".join(streamer)
    worker.join()
    assert text == tokenizer.decode(out[0, 3:].tolist())


# -- the other dialects, where they exist --------------------------------------------------------------------

def _dialect(model_type: str) -> None:
    if model_type not in DIALECTS:
        pytest.skip(f"the {model_type} dialect is not in triformers yet")


def _seq2seq_models(kind: str, folder):
    torch.manual_seed(1)
    if kind == "bart":
        config = transformers.BartConfig(
            vocab_size=VOCAB, d_model=36, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
            decoder_attention_heads=3, encoder_ffn_dim=44, decoder_ffn_dim=44, max_position_embeddings=POSITIONS,
            init_std=0.8, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1,
            bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=EOS, forced_bos_token_id=0,
            forced_eos_token_id=EOS)
        hf = transformers.BartForConditionalGeneration(config)
    else:
        config = transformers.T5Config(vocab_size=VOCAB, d_model=36, d_kv=12, d_ff=44, num_layers=2, num_heads=3,
                                       initializer_factor=8.0, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                       decoder_start_token_id=0, feed_forward_proj="gated-gelu")
        hf = transformers.T5ForConditionalGeneration(config)
    return hf.eval(), triformers.AutoModelForSeq2SeqLM.from_pretrained(_save(hf, folder))


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_seq2seq_matches_transformers(kind, tmp_path):
    _dialect(kind)
    hf, ours = _seq2seq_models(kind, tmp_path)
    ids, mask = _batch(pad=hf.config.pad_token_id)
    for kwargs in ({}, {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7},
                   {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}, {"num_beams": 2, "use_cache": False}):
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, **kwargs)
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, **kwargs)
        assert torch.equal(got, expected), kwargs
        assert bool((got[:, 0] == hf.config.decoder_start_token_id).all())


def test_bloom_matches_transformers(tmp_path):
    _dialect("bloom")
    torch.manual_seed(2)
    config = transformers.BloomConfig(vocab_size=VOCAB, hidden_size=36, n_layer=2, n_head=3, initializer_range=0.8,
                                      pad_token_id=3, bos_token_id=1, eos_token_id=EOS)
    hf = transformers.BloomForCausalLM(config).eval()
    ours = triformers.AutoModelForCausalLM.from_pretrained(_save(hf, tmp_path))
    ids, mask = _batch(pad=3)
    for kwargs in ({}, {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7}):
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW, **kwargs)
        assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW, **kwargs),
                           expected), kwargs


# ---- numeric edge values: checked, or made safe (no error from inside torch) ------------------------------
def _tiny(pad_token_id=None, nan=False):
    torch.manual_seed(0)
    config = triformers.AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                             bos_token_id=1, eos_token_id=1, pad_token_id=pad_token_id)
    model = triformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.embed_tokens.weight.mul_(50.0)  # the tied head: logits wide enough for float32 to overflow
        if nan:
            model.embed_tokens.weight.fill_(float("nan"))
    return model


PROMPTS = torch.tensor([[5, 6, 7], [8, 9, 10]])


def test_a_config_pad_outside_the_vocabulary_never_reaches_the_model():
    """Finished rows go on with the pad id, fed back as input: a config's pad of 500 in a vocabulary of 64
    is dropped (with a warning) for the first EOS id, as transformers does with no pad."""
    out = _tiny(pad_token_id=500).generate(PROMPTS, max_new_tokens=12, eos_token_id=list(range(0, 64, 3)))
    assert int(out.max()) < 64


def test_a_tiny_temperature_samples_the_argmax():
    model = _tiny()
    greedy = model.generate(PROMPTS, max_new_tokens=6)
    sampled = model.generate(PROMPTS, max_new_tokens=6, do_sample=True, temperature=1e-37, seed=0)
    assert torch.equal(sampled, greedy)  # scores / 1e-37 overflow float32: the row's maximum alone survives


@pytest.mark.parametrize("kwargs, message", [
    (dict(do_sample=True, repetition_penalty=1e-300), "repetition_penalty must be in"),
    (dict(do_sample=True, temperature=1e-300), "temperature 1e-300 is below float32's smallest"),
    (dict(do_sample=True, seed=2**70), r"seed must be an integer in 0..2\*\*64-1"),
    (dict(do_sample=True, min_new_tokens=4, eos_token_id=list(range(64))), "no token could be chosen"),
    (dict(min_new_tokens=4, eos_token_id=list(range(64))), "no token could be chosen"),
], ids=["repetition_penalty", "temperature", "seed", "all_banned_sampling", "all_banned_greedy"])
def test_extreme_generation_values_are_refused_by_name(kwargs, message):
    with pytest.raises(InputError, match=message):
        _tiny().generate(PROMPTS, max_new_tokens=6, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(do_sample=True, seed=0), dict(), dict(num_beams=2),
                                    dict(num_beams=2, do_sample=True, seed=0), dict(eos_token_id=None)],
                         ids=["sampling", "greedy", "beams", "beam_sampling", "greedy_no_eos"])
def test_nan_logits_are_refused_not_sampled_from(kwargs):
    with pytest.raises(InputError, match="no token could be chosen: the scores are NaN"):
        _tiny(nan=True).generate(PROMPTS, max_new_tokens=4, **kwargs)


@pytest.mark.parametrize("penalty", [1e308, -1e308, 1e30, -300.0])
def test_an_extreme_length_penalty_still_gives_valid_beams(penalty):
    out = _tiny().generate(PROMPTS, max_new_tokens=6, num_beams=3, num_return_sequences=2, length_penalty=penalty)
    assert out.shape[0] == 4 and int(out.min()) >= 0 and int(out.max()) < 64
