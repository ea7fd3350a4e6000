"""GenerationConfig against transformers 5.24's: every field and default, dictionaries and JSON, update /
from_dict / from_model_config / equality, validation, generation_config.json both ways, the model's own
generation_config (from the file, or from an old config.json), and generate's merge rules.

Token ids are compared exactly (see generation_assets for why the tiny models make that safe).
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from generation_assets import EOS, batch, build, pad_of

import triformers
from triformers import GenerationConfig, InputError
from triformers.generation.config import GLOBAL_DEFAULTS

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Unfeasible length constraints")

SUMMARY = dict(num_beams=4, length_penalty=2.0, min_length=56, max_length=142, no_repeat_ngram_size=3,
               early_stopping=True, forced_bos_token_id=0, forced_eos_token_id=EOS)  # bart-large-cnn's settings
SAMPLES = [{}, dict(max_new_tokens=50, do_sample=True, temperature=0.7), SUMMARY,
           dict(eos_token_id=[1, 2], bad_words_ids=[[3], [4, 5]], stop_strings=["x"], custom_key="kept")]


def _plain(config) -> dict:
    """A config's entries without transformers' bookkeeping."""
    return {k: v for k, v in config.to_dict().items() if k not in ("transformers_version", "_original_object_hash")}


def test_every_field_and_default_is_transformers(caplog):
    theirs, ours = transformers.GenerationConfig().to_dict(), GenerationConfig().to_dict()
    assert list(ours) == list(theirs)  # every field name, in transformers' order
    assert {k: v for k, v in ours.items() if k != "transformers_version"} == \
        {k: v for k, v in theirs.items() if k != "transformers_version"}  # every default (None)
    assert GLOBAL_DEFAULTS == transformers.GenerationConfig._get_default_generation_params()
    assert GenerationConfig.extra_output_flags == transformers.GenerationConfig.extra_output_flags


@pytest.mark.parametrize("kwargs", SAMPLES, ids=["empty", "lab-sampling", "summary", "lists-and-custom"])
def test_dicts_json_and_equality_match_transformers(kwargs):
    theirs, ours = transformers.GenerationConfig(**kwargs), GenerationConfig(**kwargs)
    assert _plain(ours) == _plain(theirs)
    assert ours.to_json_string(ignore_metadata=True) == theirs.to_json_string(ignore_metadata=True)
    assert ours.to_json_string(use_diff=False, ignore_metadata=True) == \
        theirs.to_json_string(use_diff=False, ignore_metadata=True)
    assert ours == GenerationConfig(**kwargs) and hash(ours) == hash(GenerationConfig(**kwargs))
    assert ours != GenerationConfig(**{**kwargs, "top_k": 7})
    assert repr(ours).startswith("GenerationConfig {")


def test_update_from_dict_and_from_model_config_match_transformers():
    for cls in (transformers.GenerationConfig, GenerationConfig):
        config = cls(max_new_tokens=5)
        assert config.update(top_k=3, not_a_field=1, max_new_tokens=9) == {"not_a_field": 1}
        assert (config.top_k, config.max_new_tokens) == (3, 9)
        assert config.update(defaults_only=True, top_k=5, top_p=0.5) == {"top_k": 5}  # top_k was set already
        assert (config.top_k, config.top_p) == (3, 0.5)
    theirs, unused_theirs = transformers.GenerationConfig.from_dict({"num_beams": 2}, top_k=4, foo=1,
                                                                    return_unused_kwargs=True)
    ours, unused_ours = GenerationConfig.from_dict({"num_beams": 2}, top_k=4, foo=1, return_unused_kwargs=True)
    assert _plain(ours) == _plain(theirs) and unused_ours == unused_theirs
    old = {"model_type": "bart", "d_model": 36, "use_cache": True, "eos_token_id": 2, "pad_token_id": None,
           "output_hidden_states": True, "task_specific_params": {"summarization": {"num_beams": 4}},
           "decoder": {"num_beams": 3, "max_length": 10}, **SUMMARY}
    theirs, ours = (cls.from_model_config(json.loads(json.dumps(old)))
                    for cls in (transformers.GenerationConfig, GenerationConfig))
    assert _plain(ours) == _plain(theirs)
    assert ours.num_beams == 4 and ours.return_dict_in_generate is True  # an output flag turns it on, as there


def _both_raise(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError):
        transformers.GenerationConfig(**kwargs)
    with pytest.raises(InputError, match=field):
        GenerationConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(suppress_tokens=[2], forced_eos_token_id=2), "forced_eos_token_id"),
    (dict(cache_implementation="nowhere"), "cache_implementation"),
    (dict(assistant_ensemble_weight=1.5), "assistant_ensemble_weight"),
    (dict(streamer=object()), "streamer"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_validation_errors_are_transformers_errors_naming_the_field(kwargs, field):
    _both_raise(kwargs, field)


def test_minor_issues_warn_and_a_changed_config_cannot_be_saved(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="triformers"):
        config = GenerationConfig(temperature=0.5, num_beams=1, length_penalty=2.0)
    assert "temperature" in caplog.text and "length_penalty" in caplog.text
    with pytest.raises(ValueError):
        transformers.GenerationConfig(temperature=0.5).save_pretrained(tmp_path / "theirs")
    with pytest.raises(InputError, match="temperature"):
        config.save_pretrained(tmp_path / "ours")
    config.validate(strict=False)  # only a warning outside saving


def test_generation_config_json_round_trips_with_transformers(tmp_path):
    kwargs = dict(SUMMARY, bad_words_ids=[[5, 6]], stop_strings=["\n\n"], suppress_tokens=[7], custom_key=3)
    GenerationConfig(**kwargs).save_pretrained(tmp_path / "ours")
    loaded = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
    assert _plain(loaded) == _plain(transformers.GenerationConfig(**kwargs))
    transformers.GenerationConfig(**kwargs).save_pretrained(tmp_path / "theirs")
    assert GenerationConfig.from_pretrained(tmp_path / "theirs") == GenerationConfig(**kwargs)
    ours_file = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
    theirs_file = json.loads((tmp_path / "theirs" / "generation_config.json").read_text())
    assert ours_file == {k: v for k, v in theirs_file.items() if k != "transformers_version"}  # set fields only


def test_from_pretrained_reads_folders_cache_ids_and_overrides(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("c" * 40)
    repo.mkdir(parents=True)
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("c" * 40)
    GenerationConfig(num_beams=3, max_length=30).save_pretrained(repo)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = GenerationConfig.from_pretrained("org/tiny", max_length=12)
    assert (config.num_beams, config.max_length) == (3, 12)
    config, unused = GenerationConfig.from_pretrained(repo, top_k=2, nothing=1, return_unused_kwargs=True)
    theirs, theirs_unused = transformers.GenerationConfig.from_pretrained(repo, top_k=2, nothing=1,
                                                                          return_unused_kwargs=True)
    assert config.top_k == 2 and unused == theirs_unused and _plain(config) == _plain(theirs)
    assert not config.was_modified()
    (repo / "config.json").write_text(json.dumps({"model_type": "bart", "num_beams": 5}))
    old = GenerationConfig.from_pretrained(repo, config_file_name="config.json", _from_model_config=True)
    assert old.num_beams == 5
    with pytest.raises(OSError):
        GenerationConfig.from_pretrained(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def summarizer(tmp_path_factory):
    """A BART with bart-large-cnn's generation settings in its generation_config.json."""
    return build("bart", tmp_path_factory.mktemp("bart"), generation=SUMMARY)


def test_a_summarization_checkpoint_gives_transformers_tokens_without_arguments(summarizer, tmp_path):
    hf, ours = summarizer
    assert _plain(ours.generation_config) == _plain(hf.generation_config)
    ids, mask = batch(pad_of(hf))
    expected = hf.generate(ids, attention_mask=mask)
    assert expected.shape[1] == 142  # max_length counts the decoder's positions; min_length 56 held EOS back
    assert torch.equal(ours.generate(ids, attention_mask=mask), expected)


def test_the_same_settings_in_an_old_config_json(summarizer, tmp_path):
    hf, ours = summarizer
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "num_beams" not in config  # as transformers, generation settings live in generation_config.json
    (tmp_path / "generation_config.json").unlink()
    config.update({k: v for k, v in SUMMARY.items()})
    (tmp_path / "config.json").write_text(json.dumps(config))
    hf_old = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ours_old = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert _plain(ours_old.generation_config) == _plain(hf_old.generation_config)
    ids, mask = batch(pad_of(hf))
    assert torch.equal(ours_old.generate(ids, attention_mask=mask), hf_old.generate(ids, attention_mask=mask))
    ours_old.save_pretrained(tmp_path / "again")  # the settings move to generation_config.json, as transformers
    hf_old.save_pretrained(tmp_path / "theirs")
    for name in ("generation_config.json",):
        ours_file = json.loads((tmp_path / "again" / name).read_text())
        theirs_file = json.loads((tmp_path / "theirs" / name).read_text())
        assert ours_file == {k: v for k, v in theirs_file.items() if k != "transformers_version"}
    assert "num_beams" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_a_passed_config_is_the_base_and_keywords_win(summarizer):
    hf, ours = summarizer
    ids, mask = batch(pad_of(hf))
    calls = [dict(generation_config=transformers.GenerationConfig(max_new_tokens=12, num_beams=1)),
             dict(generation_config=transformers.GenerationConfig(max_new_tokens=12), num_beams=2, min_length=0),
             dict(max_new_tokens=7, no_repeat_ngram_size=0, num_beams=3, length_penalty=0.5)]
    for call in calls:
        expected = hf.generate(ids, attention_mask=mask, **call)
        if "generation_config" in call:
            call = {**call, "generation_config": GenerationConfig(**call["generation_config"].to_diff_dict())}
        assert torch.equal(ours.generate(ids, attention_mask=mask, **call), expected), call
    # transformers' own GenerationConfig object is accepted as is
    theirs = transformers.GenerationConfig(max_new_tokens=4, num_beams=1, min_length=0)
    assert torch.equal(ours.generate(ids, attention_mask=mask, generation_config=theirs),
                       hf.generate(ids, attention_mask=mask, generation_config=theirs))


def test_the_models_generation_config_steers_generate_and_is_saved(tmp_path):
    hf, ours = build("gpt2", tmp_path / "gpt2")
    ids, mask = batch(pad_of(hf))
    for model in (hf, ours):
        model.generation_config.max_new_tokens = 3
        model.generation_config.min_new_tokens = 3
    assert torch.equal(ours.generate(ids, attention_mask=mask), hf.generate(ids, attention_mask=mask))
    assert ours.generate(ids, attention_mask=mask).shape[1] == 9
    ours.save_pretrained(tmp_path / "saved")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert reloaded.generation_config.max_new_tokens == 3
    assert triformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").generation_config.max_new_tokens == 3


def test_model_inputs_are_taken_by_keyword_and_the_rest_refused(tmp_path):
    hf, ours = build("t5", tmp_path / "t5")
    ids, mask = batch(pad_of(hf))
    start = hf.generation_config.decoder_start_token_id
    prefix = torch.tensor([[start, 7, 8]] * 3)
    for kwargs in (dict(input_ids=ids, attention_mask=mask), dict(input_ids=ids, attention_mask=mask,
                                                                  decoder_input_ids=prefix),
                   dict(input_ids=ids, attention_mask=mask, decoder_input_ids=prefix[:, 1:]),
                   dict(encoder_outputs=hf.get_encoder()(input_ids=ids, attention_mask=mask), attention_mask=mask)):
        expected = hf.generate(**kwargs, max_new_tokens=6)
        assert torch.equal(ours.generate(**kwargs, max_new_tokens=6), expected), list(kwargs)
    gpt2_hf, gpt2 = build("gpt2", tmp_path / "gpt2")
    assert torch.equal(gpt2.generate(max_new_tokens=5), gpt2_hf.generate(max_new_tokens=5))  # from BOS
    for kwargs, message in [(dict(inputs=ids, input_ids=ids), "inputs and input_ids"),
                            (dict(input_ids=ids, temprature=0.5), r"unknown arguments \['temprature'\]"),
                            (dict(input_ids=ids, inputs_embeds=torch.zeros(3, 6, 36)), "inputs_embeds"),
                            (dict(input_ids=ids, generation_config=GenerationConfig(temprature=0.5)), "temprature"),
                            (dict(input_ids=ids, prefix_allowed_tokens_fn=lambda b, s: [1]),
                             "prefix_allowed_tokens_fn")]:
        with pytest.raises(InputError, match=message):
            gpt2.generate(**kwargs)


def test_from_pretrained_takes_a_generation_config_as_transformers(summarizer, tmp_path):
    hf, ours = summarizer
    ours.save_pretrained(tmp_path)
    replacement = dict(num_beams=1, max_new_tokens=6, decoder_start_token_id=EOS, eos_token_id=EOS)
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(
        tmp_path, generation_config=transformers.GenerationConfig(**replacement)).eval()
    mine = triformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path, generation_config=GenerationConfig(**replacement))
    assert _plain(mine.generation_config) == _plain(theirs.generation_config)
    ids, mask = batch(pad_of(hf))
    assert torch.equal(mine.generate(ids, attention_mask=mask), theirs.generate(ids, attention_mask=mask))
