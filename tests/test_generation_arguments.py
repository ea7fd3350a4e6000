"""generate's arguments against transformers 5.24's generate, token for token, on tiny random GPT-2, T5 v1.1 and
BART checkpoints: each argument with greedy search, seeded sampling (the same torch.multinomial draws from the
global RNG, so the sampled ids must be equal) and beams; every GenerationConfig field transformers has, each
either honoured (same tokens) or refused by an InputError naming it; the caller's processors and criteria.

Ids compare exactly (see generation_assets for why that is safe on these models).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from generation_assets import batch, build, pad_of

from triformers import (EosTokenCriteria, InputError, LogitsProcessor, MaxLengthCriteria, MaxTimeCriteria,
                        StoppingCriteria)
from triformers.generation.config import FIELDS

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*(generation flags|Unfeasible|deprecated|ContinuousBatching).*")
NEW = 9
MODES = {"greedy": {}, "sampling": {"do_sample": True}, "beams": {"num_beams": 3}}


@pytest.fixture(scope="module", params=["gpt2", "t5", "bart"])
def models(request, tmp_path_factory):
    """(transformers model, triformers model, the greedy tokens of the batch) of one family."""
    hf, ours = build(request.param, tmp_path_factory.mktemp(request.param))
    ids, mask = batch(pad_of(hf))
    greedy = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW)
    return request.param, hf, ours, greedy


def _new(kind: str, greedy: torch.Tensor) -> torch.Tensor:
    """The generated part of greedy output (after the prompt / the decoder start)."""
    return greedy[:, 6:] if kind == "gpt2" else greedy[:, 1:]


def _run(model, kind: str, seed: int = 0, **kwargs):
    ids, mask = batch(1 if kind == "bart" else 0)
    torch.manual_seed(seed)
    return model.generate(ids, attention_mask=mask, **kwargs)


def _same(pair, kind: str, **kwargs) -> torch.Tensor:
    hf, ours = pair
    expected = _run(hf, kind, **kwargs)
    got = _run(ours, kind, **kwargs)
    expected = expected.sequences if hasattr(expected, "sequences") else expected
    got = got.sequences if hasattr(got, "sequences") else got
    assert torch.equal(got, expected), kwargs
    return got


def _arguments(kind: str, greedy: torch.Tensor) -> dict[str, dict]:
    """Each new argument, with values taken from the unconstrained greedy output so that it changes it."""
    new = _new(kind, greedy)
    a, b, c = (int(t) for t in new[0, :3])
    eos = int(new[0, 2])
    return {
        "max_length": dict(max_length=8),
        "min_length": dict(max_new_tokens=NEW, min_length=7, eos_token_id=eos),
        "min_new_tokens": dict(max_new_tokens=NEW, min_new_tokens=5, eos_token_id=eos),
        "bad_words_ids": dict(max_new_tokens=NEW, bad_words_ids=[[a], [b, c]]),
        "suppress_tokens": dict(max_new_tokens=NEW, suppress_tokens=[a, b]),
        "begin_suppress_tokens": dict(max_new_tokens=NEW, begin_suppress_tokens=[a]),
        "forced_bos_eos": dict(max_new_tokens=NEW, forced_bos_token_id=5, forced_eos_token_id=[6, 7]),
        "sequence_bias": dict(max_new_tokens=NEW, sequence_bias=[[[a], -30.0], [[a, b], -30.0], [[9], 40.0]]),
        "encoder_repetition_penalty": dict(max_new_tokens=NEW, encoder_repetition_penalty=3.0),
        "encoder_no_repeat_ngram_size": dict(max_new_tokens=NEW, encoder_no_repeat_ngram_size=1),
        "exponential_decay": dict(max_new_tokens=NEW, exponential_decay_length_penalty=(1, 3.0), eos_token_id=eos),
        "renormalize_remove_invalid": dict(max_new_tokens=NEW, renormalize_logits=True, remove_invalid_values=True,
                                           repetition_penalty=1.4),
        "use_cache_false": dict(max_new_tokens=NEW, use_cache=False, no_repeat_ngram_size=2),
    }


CONSTRAINTS = ("bad_words_ids", "suppress_tokens", "begin_suppress_tokens", "forced_bos_eos", "sequence_bias")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(_arguments("gpt2", torch.arange(20).view(1, 20))))
def test_each_argument_matches_transformers(models, name, mode):
    kind, hf, ours, greedy = models
    kwargs = {**_arguments(kind, greedy)[name], **MODES[mode]}
    got = _same((hf, ours), kind, **kwargs)
    if mode == "greedy" and name in CONSTRAINTS:  # the argument bites: the plain greedy output is not allowed
        assert not torch.equal(got[:, :greedy.shape[1]], greedy[:, :got.shape[1]]), name


@pytest.mark.parametrize("kwargs", [
    dict(min_p=0.3), dict(typical_p=0.5), dict(epsilon_cutoff=0.05), dict(eta_cutoff=0.05), dict(top_h=0.4),
    dict(min_p=0.1, top_k=4, top_p=0.9, temperature=0.6), dict(num_return_sequences=3, top_k=8),
    dict(num_beams=3, num_return_sequences=2, typical_p=0.7), dict(num_beams=2, min_p=0.2, temperature=1.5),
], ids=lambda k: "-".join(k))
def test_sampling_filters_draw_what_transformers_draws(models, kwargs):
    kind, hf, ours, _ = models
    for seed in (0, 1):
        _same((hf, ours), kind, seed=seed, do_sample=True, max_new_tokens=NEW, **kwargs)


def test_integral_floats_where_transformers_takes_them(models):
    kind, hf, ours, _ = models
    for mode in ({}, {"do_sample": True}):
        _same((hf, ours), kind, max_new_tokens=float(NEW), top_k=0.0, **mode)
        _same((hf, ours), kind, max_length=8.0, **mode)
    with pytest.raises(TypeError):  # transformers' beam search sizes a tensor with the float; triformers does not
        _run(hf, kind, max_new_tokens=float(NEW), num_beams=2)
    assert torch.equal(_run(ours, kind, max_new_tokens=float(NEW), num_beams=2),
                       _run(ours, kind, max_new_tokens=NEW, num_beams=2))


def test_beams_return_sequences_and_lengths_as_transformers(models):
    kind, hf, ours, greedy = models
    eos = int(_new(kind, greedy)[1, 1])
    for kwargs in (dict(num_beams=4, num_return_sequences=4, eos_token_id=eos, length_penalty=0.3),
                   dict(num_beams=3, num_return_sequences=2, max_length=7, early_stopping=True, eos_token_id=eos)):
        _same((hf, ours), kind, **kwargs)


# ---- every field transformers has: honoured (same tokens) or refused by name ---------------------------------
def _field_cases(eos: int, a: int) -> dict[str, dict]:
    sampling = {"do_sample": True}
    return {
        "max_length": dict(max_length=10), "max_new_tokens": dict(max_new_tokens=4),
        "min_length": dict(min_length=12, eos_token_id=eos), "min_new_tokens": dict(min_new_tokens=5, eos_token_id=eos),
        "early_stopping": dict(num_beams=3, early_stopping="never", eos_token_id=eos), "max_time": dict(max_time=0.0),
        "stop_strings": dict(stop_strings=["ab"]), "do_sample": sampling, "num_beams": dict(num_beams=3),
        "use_mtp": dict(use_mtp=True), "use_cache": dict(use_cache=False), "cache_implementation":
        dict(cache_implementation="offloaded"), "cache_config": dict(cache_config={"nbits": 4}),
        "max_cache_len": dict(max_cache_len=64), "temperature": dict(sampling, temperature=0.7),
        "top_k": dict(sampling, top_k=5), "top_p": dict(sampling, top_p=0.8), "min_p": dict(sampling, min_p=0.2),
        "top_h": dict(sampling, top_h=0.5), "typical_p": dict(sampling, typical_p=0.6),
        "epsilon_cutoff": dict(sampling, epsilon_cutoff=0.05), "eta_cutoff": dict(sampling, eta_cutoff=0.05),
        "repetition_penalty": dict(repetition_penalty=1.5), "encoder_repetition_penalty":
        dict(encoder_repetition_penalty=2.0), "length_penalty": dict(num_beams=3, length_penalty=0.2, eos_token_id=eos),
        "no_repeat_ngram_size": dict(no_repeat_ngram_size=2), "bad_words_ids": dict(bad_words_ids=[[a]]),
        "renormalize_logits": dict(renormalize_logits=True), "forced_bos_token_id": dict(forced_bos_token_id=5),
        "forced_eos_token_id": dict(forced_eos_token_id=6), "remove_invalid_values": dict(remove_invalid_values=True),
        "exponential_decay_length_penalty": dict(exponential_decay_length_penalty=(1, 2.0), eos_token_id=eos),
        "suppress_tokens": dict(suppress_tokens=[a]), "begin_suppress_tokens": dict(begin_suppress_tokens=[a]),
        "sequence_bias": dict(sequence_bias=[[[a], -20.0]]), "token_healing": dict(token_healing=True),
        "guidance_scale": dict(guidance_scale=1.5), "watermarking_config": dict(watermarking_config={"bias": 2.0}),
        "num_return_sequences": dict(sampling, num_return_sequences=2),
        "output_attentions": dict(return_dict_in_generate=True, output_attentions=True),
        "output_hidden_states": dict(return_dict_in_generate=True, output_hidden_states=True),
        "output_scores": dict(return_dict_in_generate=True, output_scores=True),
        "output_logits": dict(return_dict_in_generate=True, output_logits=True),
        "return_dict_in_generate": dict(return_dict_in_generate=True),
        "pad_token_id": dict(pad_token_id=3, eos_token_id=eos), "bos_token_id": dict(bos_token_id=4),
        "eos_token_id": dict(eos_token_id=eos), "encoder_no_repeat_ngram_size": dict(encoder_no_repeat_ngram_size=1),
        "decoder_start_token_id": dict(decoder_start_token_id=3), "is_assistant": dict(is_assistant=True),
        "num_assistant_tokens": dict(num_assistant_tokens=5),
        "num_assistant_tokens_schedule": dict(num_assistant_tokens_schedule="heuristic"),
        "assistant_confidence_threshold": dict(assistant_confidence_threshold=0.2),
        "prompt_lookup_num_tokens": dict(prompt_lookup_num_tokens=3),
        "max_matching_ngram_size": dict(max_matching_ngram_size=3),
        "assistant_early_exit": dict(assistant_early_exit=1),
        "assistant_lookbehind": dict(assistant_lookbehind=5), "target_lookbehind": dict(target_lookbehind=5),
        "assistant_ensemble_weight": dict(assistant_ensemble_weight=0.5), "speculation_type":
        dict(speculation_type="dflash"), "compile_config": dict(compile_config=transformers.CompileConfig()),
        "disable_compile": dict(disable_compile=True), "continuous_batching_config":
        dict(continuous_batching_config={"max_batch_tokens": 8}), "low_memory": dict(low_memory=True),
        "penalty_alpha": dict(penalty_alpha=0.6, top_k=4), "dola_layers": dict(dola_layers="low"),
        "diversity_penalty": dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.5),
        "num_beam_groups": dict(num_beams=4, num_beam_groups=2), "constraints": dict(constraints=[[5]]),
        "force_words_ids": dict(num_beams=2, force_words_ids=[[5]]), "prefill_chunk_size": dict(prefill_chunk_size=4),
    }


def test_the_field_walk_covers_every_transformers_field():
    theirs = [k for k in transformers.GenerationConfig().to_dict() if k not in ("transformers_version",
                                                                                  "_from_model_config")]
    assert theirs == list(FIELDS) and set(_field_cases(2, 3)) == set(theirs)


@pytest.mark.parametrize("field", list(FIELDS))
def test_every_field_is_honoured_or_refused_by_name(models, field):
    kind, hf, ours, greedy = models
    new = _new(kind, greedy)
    kwargs = {"max_new_tokens": NEW, **_field_cases(int(new[0, 2]), int(new[0, 0]))[field]}
    try:
        got = _run(ours, kind, **kwargs)
    except InputError as err:
        assert field in str(err), (field, str(err))
        return
    expected = _run(hf, kind, **kwargs)
    if kwargs.get("return_dict_in_generate"):
        assert type(got).__name__ == type(expected).__name__
        got, expected = got.sequences, expected.sequences
    assert torch.equal(got, expected), field


# ---- the caller's processors and criteria, with transformers' call signatures ---------------------------------
class BanEvenAfterTwo(LogitsProcessor):
    def __call__(self, input_ids, scores):
        if input_ids.shape[1] % 2 == 0:
            scores = scores.clone()
            scores[:, ::2] = -float("inf")
        return scores


class StopOn(StoppingCriteria):
    """Done once one of `tokens` is among the last two."""

    def __init__(self, tokens: list[int]):
        self.tokens = torch.tensor(tokens)

    def __call__(self, input_ids, scores, **kwargs):
        return torch.isin(input_ids[:, -2:], self.tokens).any(dim=-1)


def test_callers_processors_and_criteria_run_as_in_transformers(models):
    kind, hf, ours, greedy = models
    new = _new(kind, greedy)
    stop = new[:, 3].tolist()  # each row's fourth greedy token: every row stops by then
    for mode in MODES.values():
        _same((hf, ours), kind, max_new_tokens=NEW, logits_processor=[BanEvenAfterTwo()], **mode)
        _same((hf, ours), kind, max_new_tokens=NEW, stopping_criteria=[StopOn(stop)], **mode)
    got = _same((hf, ours), kind, max_new_tokens=NEW, stopping_criteria=[StopOn(stop)], eos_token_id=int(new[0, 1]))
    assert got.shape[1] <= greedy.shape[1] - NEW + 4
    # a built-in criterion the caller passes replaces generate's own of that class, as transformers merges them
    eos = int(new[2, 2])
    for hf_criterion, ours_criterion in [(transformers.MaxLengthCriteria(7), MaxLengthCriteria(7)),
                                         (transformers.EosTokenCriteria(eos), EosTokenCriteria(eos)),
                                         (transformers.MaxTimeCriteria(0.0), MaxTimeCriteria(0.0))]:
        criteria = transformers.StoppingCriteriaList([hf_criterion])
        expected = _run(hf, kind, max_new_tokens=NEW, stopping_criteria=criteria)
        assert torch.equal(_run(ours, kind, max_new_tokens=NEW, stopping_criteria=[ours_criterion]), expected)


def test_return_dict_fields_match_transformers(models):
    kind, hf, ours, _ = models
    for mode in ({}, {"do_sample": True, "top_k": 5}, {"num_beams": 3, "num_return_sequences": 2},
                 {"num_beams": 2, "do_sample": True}):
        kwargs = dict(max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True, output_logits=True, **mode)
        expected, got = _run(hf, kind, **kwargs), _run(ours, kind, **kwargs)
        assert type(got).__name__ == type(expected).__name__
        assert set(got.keys()) == set(expected.keys()) - {"cache"}  # triformers does not hand its cache out
        assert torch.equal(got.sequences, expected.sequences)
        # float32 math in both: equal within 1e-5 of the logits' size (these initialisations make logits of
        # ~15, where both libraries lie ~1e-4 from a float64 run and the kernels' summation order shows)
        for name in ("scores", "logits"):
            assert len(got[name]) == len(expected[name])
            for mine, theirs in zip(got[name], expected[name], strict=True):
                size = max(1.0, theirs[theirs.isfinite()].abs().max().item())
                torch.testing.assert_close(mine, theirs, atol=1e-5 * size, rtol=0)
        if "num_beams" in mode:
            assert torch.equal(got.beam_indices, expected.beam_indices)
            torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, atol=1e-5, rtol=1e-5)
            assert got.past_key_values is None
    plain = _run(ours, kind, max_new_tokens=NEW, return_dict_in_generate=True)
    assert plain.scores is None and plain.logits is None and plain["sequences"] is plain[0]


def test_bad_values_are_refused_by_name(models):
    kind, _, ours, _ = models
    for kwargs, message in [(dict(bad_words_ids=[5]), "bad_words_ids"), (dict(suppress_tokens=[500]), "suppress"),
                            (dict(sequence_bias={5: 1.0}), "sequence_bias"), (dict(do_sample=True, min_p=1.5), "min_p"),
                            (dict(exponential_decay_length_penalty=(1, 2.0), eos_token_id=None), "exponential"),
                            (dict(logits_processor=[3]), "logits_processor"), (dict(stopping_criteria=["x"]),
                                                                                "stopping_criteria")]:
        with pytest.raises(InputError, match=message):
            _run(ours, kind, max_new_tokens=NEW, **kwargs)
