"""Config keys: each dialect's key table, read and written key for key, honoured as transformers 5.24 honours it,
or refused with a ConfigError naming the key and the file.

Round trip: config.json files written by transformers' own classes, with every key a dialect reads set away from
its default, are loaded by triformers and saved back; the two JSON dicts must be equal except `transformers_version`,
which triformers does not write (it is not transformers). `label2id` is always written as the inverse of id2label,
so the cases give both, as real checkpoints do (transformers writes `label2id: null` when only id2label was given).
Parity: the same checkpoints, tiny random models with perturbed weights, give transformers' logits (fp32, eval,
atol 1e-5: both sides run the same math in another order, ~1e-6 apart; a key ignored moves them far more).
"""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
import transformers as tr

import triformers
from triformers import ConfigError
from triformers.dialects import get_dialect

ATOL = dict(atol=1e-5, rtol=0)
LABELS = {0: "neg", 1: "mixed", 2: "pos"}
IDS = dict(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
MLM, CLM, S2S = triformers.AutoModelForMaskedLM, triformers.AutoModelForCausalLM, triformers.AutoModelForSeq2SeqLM
BERT = dict(vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=33, type_vocab_size=3, initializer_range=0.03, layer_norm_eps=0.1,
            hidden_dropout_prob=0.05, attention_probs_dropout_prob=0.07, **IDS)
GPT2 = dict(vocab_size=97, n_positions=19, n_embd=32, n_layer=2, n_head=4, layer_norm_epsilon=0.1,
            initializer_range=0.05, resid_pdrop=0.15, attn_pdrop=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
BLOOM = dict(vocab_size=97, hidden_size=24, n_layer=3, n_head=3, layer_norm_epsilon=0.1, initializer_range=0.05,
             hidden_dropout=0.1, attention_dropout=0.15, pad_token_id=3, bos_token_id=4, eos_token_id=5)
T5 = dict(vocab_size=101, d_model=24, d_kv=5, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=3,
          relative_attention_num_buckets=10, relative_attention_max_distance=17, dropout_rate=0.05,
          layer_norm_epsilon=0.1, initializer_factor=0.5, classifier_dropout=0.1, pad_token_id=2, eos_token_id=3,
          decoder_start_token_id=2, bos_token_id=4, problem_type="regression")
BART = dict(vocab_size=101, max_position_embeddings=37, encoder_layers=2, decoder_layers=3, d_model=24,
            dropout=0.05, attention_dropout=0.1, activation_dropout=0.15, init_std=0.03, classifier_dropout=0.2,
            pad_token_id=3, bos_token_id=4, eos_token_id=5, decoder_start_token_id=6, forced_eos_token_id=7)
# id -> (transformers config class, its keys, transformers model class, the triformers Auto class)
CASES = {
    "bert": (tr.BertConfig, dict(BERT, hidden_act="gelu_pytorch_tanh", classifier_dropout=0.2,
                                 tie_word_embeddings=False, pad_token_id=3, bos_token_id=4, eos_token_id=[5, 6],
                                 decoder_start_token_id=7, problem_type="multi_label_classification"),
             tr.BertForMaskedLM, MLM),
    "bert-swish": (tr.BertConfig, dict(BERT, hidden_act="swish"), tr.BertForMaskedLM, MLM),
    # RobertaLMHead applies erf GELU whatever hidden_act says
    "roberta-relu": (tr.RobertaConfig, dict(BERT, type_vocab_size=1, hidden_act="relu", pad_token_id=1,
                                            bos_token_id=0, eos_token_id=2, tie_word_embeddings=False),
                     tr.RobertaForMaskedLM, MLM),
    "roberta": (tr.RobertaConfig, dict(BERT, hidden_act="gelu_new", pad_token_id=2, bos_token_id=None,
                                       eos_token_id=None, classifier_dropout=0.3, decoder_start_token_id=4),
                tr.RobertaForMaskedLM, MLM),
    "gpt2": (tr.GPT2Config, dict(GPT2, n_inner=50, activation_function="relu", embd_pdrop=0.0,
                                 scale_attn_weights=False, tie_word_embeddings=False, summary_type="last",
                                 decoder_start_token_id=5, **IDS),
             tr.GPT2LMHeadModel, CLM),
    "gpt2-inner-null": (tr.GPT2Config, dict(GPT2, activation_function="gelu_pytorch_tanh", embd_pdrop=0.05),
                        tr.GPT2LMHeadModel, CLM),
    "gpt2-inner-4x": (tr.GPT2Config, dict(GPT2, n_inner=128, activation_function="gelu"), tr.GPT2LMHeadModel, CLM),
    "bloom": (tr.BloomConfig, dict(BLOOM, pretraining_tp=2, tie_word_embeddings=False, **IDS), tr.BloomForCausalLM,
              CLM),
    # slow_but_exact changes nothing while pretraining_tp is 1 (see test_values_triformers_cannot_honour_...)
    "bloom-slow": (tr.BloomConfig, dict(BLOOM, slow_but_exact=True, decoder_start_token_id=6), tr.BloomForCausalLM,
                   CLM),
    "t5-v1.0": (tr.T5Config, dict(T5, feed_forward_proj="relu", **IDS), tr.T5ForConditionalGeneration, S2S),
    # T5Config turns tie_word_embeddings false into scale_decoder_outputs false (and writes tie true)
    "t5-v1.1": (tr.T5Config, dict(T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
                tr.T5ForConditionalGeneration, S2S),
    "t5-gated-silu": (tr.T5Config, dict(T5, feed_forward_proj="gated-silu"), tr.T5ForConditionalGeneration, S2S),
    # explicit dense_act_fn / is_gated_act override feed_forward_proj, in transformers and here
    # (weights of transformers' own scale, so that erf vs tanh GELU moves the logits by ~1e-3)
    "t5-gated-erf-gelu": (tr.T5Config, dict(T5, feed_forward_proj="gated-gelu", dense_act_fn="gelu",
                                            initializer_factor=1.0), tr.T5ForConditionalGeneration, S2S),
    "t5-ungated-override": (tr.T5Config, dict(T5, feed_forward_proj="gated-gelu", dense_act_fn="relu",
                                              is_gated_act=False), tr.T5ForConditionalGeneration, S2S),
    # the two stacks differ (distilled checkpoints): heads 4 vs 2 (head dims 6 vs 12), MLP 40 vs 56
    "bart": (tr.BartConfig, dict(BART, encoder_ffn_dim=40, decoder_ffn_dim=56, encoder_attention_heads=4,
                                 decoder_attention_heads=2, activation_function="relu", scale_embedding=True, **IDS),
             tr.BartForConditionalGeneration, S2S),
    "bart-same-stacks": (tr.BartConfig, dict(BART, encoder_ffn_dim=40, decoder_ffn_dim=40, encoder_attention_heads=3,
                                             decoder_attention_heads=3, activation_function="gelu_new",
                                             problem_type="single_label_classification"),
                         tr.BartForConditionalGeneration, S2S),
}
# keys no transformers config class writes (so no case can set them): num_labels (id2label carries it), forced
# ids outside BART (5.24 keeps them in generation_config.json), T5's tie_word_embeddings (T5Config writes true)
NEVER_WRITTEN = {"bert": {"num_labels", "forced_bos_token_id", "forced_eos_token_id"},
                 "gpt2": {"num_labels", "forced_bos_token_id", "forced_eos_token_id"},
                 "bloom": {"num_labels", "forced_bos_token_id", "forced_eos_token_id"},
                 "t5": {"num_labels", "forced_bos_token_id", "forced_eos_token_id", "tie_word_embeddings"},
                 "bart": {"num_labels", "forced_bos_token_id"}}
NEVER_WRITTEN["roberta"] = NEVER_WRITTEN["bert"]


def perturb(model: torch.nn.Module) -> None:
    """Move every weight (norms off 1, biases off 0), so that a misplaced norm, bias or scale shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in model.parameters():
            spread = float(tensor.std()) if tensor.numel() > 1 else 0.0
            tensor.add_((0.5 * spread if spread > 0 else 0.1) * torch.randn_like(tensor))


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """(id, the transformers model, its folder, triformers' model loaded from it)."""
    config_cls, keys, model_cls, auto = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    hf = model_cls(config_cls(**keys)).eval()
    perturb(hf)
    hf.save_pretrained(folder)
    return request.param, hf, folder, auto.from_pretrained(folder)


def inputs(model_type: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(8, 90, (2, 9), generator=g)
    if model_type in ("t5", "bart"):
        return dict(input_ids=ids, decoder_input_ids=torch.randint(8, 90, (2, 6), generator=g))
    return dict(input_ids=ids)


def test_round_trip_is_key_for_key(case, tmp_path):
    name, _, folder, ours = case
    ours.save_pretrained(tmp_path)
    original = json.loads((folder / "config.json").read_text())
    written = json.loads((tmp_path / "config.json").read_text())
    assert original.pop("transformers_version")
    assert written == original


@torch.no_grad()
def test_every_key_read_changes_the_model_as_in_transformers(case):
    name, hf, _, ours = case
    batch = inputs(ours.config.model_type)
    expected = hf(**batch).logits
    assert expected.abs().max() > 0.1  # logits of a size where a key ignored would show
    torch.testing.assert_close(ours(**batch).logits, expected, **ATOL)


@pytest.mark.parametrize("model_type", list(NEVER_WRITTEN))
def test_cases_move_every_key_of_the_table_off_its_default(model_type):
    """The round-trip cases cover the table: each key (bar `only` ones, which have one value) is set off default."""
    dialect = get_dialect(model_type)
    moved = set()
    for config_cls, keys, _, _ in CASES.values():
        if config_cls.model_type != model_type:
            continue
        default, given = config_cls().to_dict(), config_cls(**keys).to_dict()
        moved |= {k for k in given if given[k] != default.get(k, "absent")}
    wanted = {key.name for key in dialect.keys if not key.only} - NEVER_WRITTEN[model_type]
    assert wanted - moved == set()


def test_file_spelling_and_presence_are_kept(tmp_path):
    """A key spelled another way that means the same (BLOOM's old `n_embed`), a default id2label written out and
    an absent optional key are written back as the file had them."""
    bloom = {"model_type": "bloom", "vocab_size": 50, "n_embed": 24, "n_layer": 1, "n_head": 3,
             "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1}}
    (tmp_path / "config.json").write_text(json.dumps(bloom))
    config = triformers.AutoConfig.from_pretrained(tmp_path)
    assert (config.hidden_size, config.intermediate_size) == (24, 96)
    written = get_dialect("bloom").config_to_hf(config)
    assert written["n_embed"] == 24 and "hidden_size" not in written
    assert written["id2label"] == bloom["id2label"] and written["label2id"] == bloom["label2id"]
    assert "decoder_start_token_id" not in written and "problem_type" not in written
    assert get_dialect("bloom").config_to_hf(config.replace(hidden_size=30, intermediate_size=120))["n_embed"] == 30


def test_second_names_are_read_and_overridden_as_in_transformers(tmp_path):
    """transformers reads its attribute_map aliases from config.json too (`num_hidden_layers` for GPT-2's n_layer),
    and an override in either name replaces the setting, kept under the file's name."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50, "hidden_size": 32,
                                                      "num_hidden_layers": 3, "n_head": 4}))
    config = triformers.AutoConfig.from_pretrained(tmp_path)
    theirs = tr.GPT2Config.from_pretrained(tmp_path)
    assert (config.hidden_size, config.num_layers) == (theirs.n_embd, theirs.n_layer) == (32, 3)
    written = get_dialect("gpt2").config_to_hf(config)
    assert (written["hidden_size"], written["num_hidden_layers"]) == (32, 3) and "n_layer" not in written
    overridden = triformers.AutoConfig.from_pretrained(tmp_path, n_layer=1, num_attention_heads=2)
    assert (overridden.num_layers, overridden.num_heads) == (1, 2)
    written = get_dialect("gpt2").config_to_hf(overridden)
    assert (written["num_hidden_layers"], written["n_head"]) == (1, 2) and "n_layer" not in written


def test_keys_absent_from_an_old_file_are_written_as_transformers_assumed(tmp_path):
    """A minimal config.json gains the keys transformers writes, at the values it assumed for the absent ones."""
    (tmp_path / "in").mkdir()
    minimal = {"model_type": "gpt2", "vocab_size": 50, "n_embd": 16, "n_layer": 1, "n_head": 2, "n_ctx": 16}
    (tmp_path / "in" / "config.json").write_text(json.dumps(minimal))
    CLM.from_config(triformers.AutoConfig.from_pretrained(tmp_path / "in")).save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["n_ctx"] == 16 and written["n_inner"] is None and written["embd_pdrop"] == 0.1
    before, after = (tr.GPT2Config.from_pretrained(tmp_path / d).to_dict() for d in ("in", "out"))
    for meta in ("architectures", "dtype", "transformers_version"):
        before.pop(meta), after.pop(meta)
    assert after == before


def test_configs_the_keys_cannot_say_are_refused_on_save():
    bert = triformers.AutoConfig.for_model("bert", hidden_size=24, num_attention_heads=3)
    with pytest.raises(ConfigError, match=r"norm='rms' cannot be written as bert config.json keys"):
        get_dialect("bert").config_to_hf(bert.replace(norm="rms"))
    t5 = triformers.AutoConfig.for_model("t5", d_model=24, d_kv=8, num_heads=3)  # v1.0: output scaled by 24**-0.5
    with pytest.raises(ConfigError, match=r"output_scale=.* cannot be written"):
        get_dialect("t5").config_to_hf(t5.replace(hidden_size=48))
    bloom = triformers.AutoConfig.for_model("bloom", hidden_size=24, n_head=3)
    with pytest.raises(ConfigError, match=r"intermediate_size=100 cannot be written as bloom"):
        get_dialect("bloom").config_to_hf(bloom.replace(intermediate_size=100))


@pytest.mark.parametrize("model_type, keys, message", [
    ("bert", dict(is_decoder=True), "is_decoder=True is not supported"),
    ("bert", dict(add_cross_attention=True), "add_cross_attention=True is not supported"),
    ("bert", dict(hidden_act="quick_gelu"), "hidden_act 'quick_gelu' is not supported"),
    ("roberta", dict(is_decoder=True), "is_decoder=True is not supported"),
    ("roberta", dict(pad_token_id=None), "RoBERTa needs pad_token_id"),
    ("gpt2", dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True is not supported"),
    ("gpt2", dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn=True is not supported"),
    ("gpt2", dict(add_cross_attention=True), "add_cross_attention=True is not supported"),
    ("gpt2", dict(activation_function="gelu_fast"), "activation_function 'gelu_fast' is not supported"),
    ("bloom", dict(apply_residual_connection_post_layernorm=True), "apply_residual_connection_post_layernorm=True"),
    ("bloom", dict(hidden_size=24, n_embed=36), "hidden_size and n_embed name one setting and disagree"),
    ("bloom", dict(pretraining_tp=2, slow_but_exact=True), "slow_but_exact=True is not supported .*leaves out"),
    ("t5", dict(is_encoder_decoder=False), "is_encoder_decoder=False is not supported"),
    ("t5", dict(dense_act_fn="gelu_10"), "dense_act_fn 'gelu_10' is not supported"),
    ("t5", dict(problem_type="ranking"), "problem_type='ranking' is not supported"),
    ("bart", dict(encoder_layerdrop=0.1), "encoder_layerdrop=0.1 is not supported .*LayerDrop"),
    ("bart", dict(decoder_layerdrop=0.2), "decoder_layerdrop=0.2 is not supported"),
    ("bart", dict(tie_word_embeddings=False), "tie_word_embeddings=False is not supported .*embedding matrices"),
    ("bart", dict(encoder_attention_heads=4, decoder_attention_heads=5, d_model=24), "num_decoder_heads 5"),
])
def test_values_triformers_cannot_honour_are_refused(model_type, keys, message, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, **keys}))
    with pytest.raises(ConfigError, match=message) as err:
        triformers.AutoConfig.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


DROPOUTS = {  # a distinct rate per key, so that one taken for another shows
    "bert": dict(BERT, hidden_dropout_prob=0.11, attention_probs_dropout_prob=0.0),
    "gpt2": dict(GPT2, embd_pdrop=0.05, resid_pdrop=0.15, attn_pdrop=0.0),
    "bloom": dict(BLOOM, hidden_dropout=0.12, attention_dropout=0.0),
    "t5": dict(T5, dropout_rate=0.13),
    "bart": dict(BART, encoder_attention_heads=3, decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=40,
                 dropout=0.14, activation_dropout=0.17, attention_dropout=0.0),
}
MODELS = {"bert": tr.BertForMaskedLM, "gpt2": tr.GPT2LMHeadModel, "bloom": tr.BloomForCausalLM,
          "t5": tr.T5ForConditionalGeneration, "bart": tr.BartForConditionalGeneration}


@pytest.mark.parametrize("model_type", list(DROPOUTS))
def test_dropout_keys_drop_where_transformers_drops(model_type, tmp_path, monkeypatch):
    """In a training forward, the dropouts applied (their rates, how many times) are transformers' own: GPT-2's
    embd_pdrop on the embeddings only, nothing after GPT-2's and BLOOM's final norm, T5's after its final norm."""
    config_cls = MODELS[model_type].config_class
    theirs = MODELS[model_type](config_cls(**DROPOUTS[model_type])).train()
    theirs.save_pretrained(tmp_path)
    ours = {"bert": MLM, "gpt2": CLM, "bloom": CLM}.get(model_type, S2S).from_pretrained(tmp_path).train()
    rates: dict[str, list[float]] = {"ours": [], "theirs": []}
    for module in ours.modules():  # ours: Dropout modules (attention-probability dropout is inside SDPA on both)
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(lambda m, args, out: rates["ours"].append(m.p) if m.p else None)
    dropout = torch.nn.functional.dropout  # theirs: modules and functional calls alike go through F.dropout

    def recording(x, p=0.5, training=True, inplace=False):
        if training and p:
            rates["theirs"].append(p)
        return dropout(x, p, training, inplace)

    monkeypatch.setattr(torch.nn.functional, "dropout", recording)
    theirs(**inputs(model_type))
    monkeypatch.undo()
    ours(**inputs(model_type))
    assert rates["theirs"] and sorted(rates["ours"]) == sorted(rates["theirs"])


def test_classifier_dropout_reaches_the_heads():
    """Attention dropout (a rate handed to SDPA, as transformers does) and the classification heads' dropout."""
    gpt2 = triformers.AutoModelForSequenceClassification.from_config(triformers.AutoConfig.for_model("gpt2", **GPT2))
    assert gpt2.decoder.layers[0].attn.dropout == 0.2 and gpt2.classifier.drop.p == 0.0  # GPT-2's `score` drops not
    bloom = triformers.AutoModelForSequenceClassification.from_config(triformers.AutoConfig.for_model("bloom", **BLOOM))
    assert bloom.decoder.layers[0].attn.dropout == 0.15 and bloom.classifier.drop.p == 0.0
    bert = triformers.AutoModelForSequenceClassification.from_config(triformers.AutoConfig.for_model(
        "bert", **dict(BERT, classifier_dropout=0.3)))
    assert bert.encoder.embed_drop.p == bert.encoder.layers[0].drop.p == 0.05 and bert.classifier.drop.p == 0.3
    tokens = triformers.AutoModelForTokenClassification.from_config(triformers.AutoConfig.for_model("bert", **BERT))
    assert tokens.drop.p == 0.05  # classifier_dropout null: hidden_dropout_prob, as BertForTokenClassification
    t5 = S2S.from_config(triformers.AutoConfig.for_model("t5", **T5))
    assert t5.decoder.layers[0].attn.dropout == t5.decoder.layers[0].cross_attn.dropout == 0.05
    bart = triformers.AutoModelForSequenceClassification.from_config(triformers.AutoConfig.for_model(
        "bart", **BART, encoder_attention_heads=3, decoder_attention_heads=3))
    assert bart.decoder.layers[0].cross_attn.dropout == 0.1 and bart.classifier.drop.p == 0.2


@torch.no_grad()
def test_bart_with_different_stacks_generates_as_transformers(tmp_path):
    torch.manual_seed(3)
    config = tr.BartConfig(vocab_size=97, d_model=36, encoder_layers=2, decoder_layers=3, encoder_attention_heads=6,
                           decoder_attention_heads=2, encoder_ffn_dim=44, decoder_ffn_dim=70,
                           max_position_embeddings=40, init_std=0.8, dropout=0.0, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    hf = tr.BartForConditionalGeneration(config).eval()
    hf.save_pretrained(tmp_path)
    ours = S2S.from_pretrained(tmp_path)
    assert ours.decoder.layers[0].attn.num_heads == 2 and ours.encoder.layers[0].attn.num_heads == 6
    assert ours.decoder.layers[0].mlp.up.weight.shape == (70, 36)
    assert ours.encoder.layers[0].mlp.up.weight.shape == (44, 36)
    ids = torch.tensor([[5, 8, 13, 21, 34, 2], [1, 1, 7, 9, 11, 2]])
    mask = ids.ne(1).long()
    batch = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor([[2, 5, 6], [2, 7, 8]]))
    torch.testing.assert_close(ours(**batch).logits, hf(**batch).logits, atol=1e-4, rtol=1e-6)  # logits ~ 100
    for kwargs in ({}, {"num_beams": 3}):
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs), expected), kwargs
    ours.save_pretrained(tmp_path / "ours")  # and what triformers saves, transformers loads with both stacks
    reloaded = tr.BartForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    torch.testing.assert_close(reloaded(**batch).logits, hf(**batch).logits, atol=0, rtol=0)


def test_config_answers_the_checkpoint_names_as_transformers(case):
    """Every name of every key of the table (transformers' attribute_map aliases are second names) and keys kept in
    `extra` read as attributes of our config with transformers' own values (forced ids, which transformers 5.24
    moves to the generation config, aside)."""
    name, hf, _, ours = case
    dialect = get_dialect(ours.config.model_type)
    names = {n for key in dialect.keys for n in key.names} | {"is_encoder_decoder", "use_cache"}
    names -= {"num_labels", "forced_bos_token_id", "forced_eos_token_id", "n_embed", "id2label"}
    assert ours.config.labels() == hf.config.id2label  # our id2label field is {} for default names
    if not ours.config.tie_word_embeddings and ours.config.model_type == "t5":
        names.discard("tie_word_embeddings")
    answers = {n: getattr(ours.config, n) for n in sorted(names)}
    # an optional key the file does not set is no attribute of transformers' config; ours answers its default
    expected = {n: getattr(hf.config, n) if hasattr(hf.config, n) else None for n in sorted(names)}
    assert answers == expected


def test_checkpoint_names_are_read_only_fields_are_not(case):
    _, _, _, ours = case
    config = ours.config.replace()
    read_only = {"bert": "num_hidden_layers", "gpt2": "n_layer", "bloom": "n_layer", "t5": "d_ff",
                 "bart": "encoder_layers", "roberta": "num_hidden_layers"}[config.model_type]
    field = {"d_ff": "intermediate_size"}.get(read_only, "num_layers")
    with pytest.raises(AttributeError, match=rf"config.{read_only} is read-only: .* set config.{field}"):
        setattr(config, read_only, 1)
    with pytest.raises(AttributeError, match=r"config.use_cache is a config.json key triformers does not use"):
        config.use_cache = False
    with pytest.raises(AttributeError, match=r"has no field 'no_such_key'"):
        config.no_such_key = 1
    assert not hasattr(config, "no_such_key")
    config.pad_token_id = 0  # ModelConfig's own fields stay settable
    setattr(config, field, 3)
    assert config.pad_token_id == 0 and getattr(config, read_only) == 3
    assert pickle.loads(pickle.dumps(config)) == copy.deepcopy(config) == config


def test_named_attributes_for_configs_from_scratch():
    gpt2 = triformers.AutoConfig.for_model("gpt2", n_embd=64, n_layer=3, n_head=4, summary_type="last")
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.num_hidden_layers, gpt2.num_attention_heads) == (3, 64, 3, 4)
    assert gpt2.n_inner is None and gpt2.max_position_embeddings == 1024 and gpt2.is_encoder_decoder is False
    assert gpt2.summary_type == "last" and gpt2.extra == {"summary_type": "last"}  # unknown keys are kept
    t5 = triformers.AutoConfig.for_model("t5", d_model=64, d_ff=128, feed_forward_proj="gated-gelu")
    assert (t5.d_model, t5.d_ff, t5.dense_act_fn, t5.is_gated_act, t5.is_encoder_decoder) == (64, 128, "gelu_new",
                                                                                            True, True)
    bart = triformers.AutoConfig.for_model("bart", d_model=64, encoder_attention_heads=8, decoder_attention_heads=4)
    assert (bart.num_heads, bart.num_decoder_heads, bart.decoder_attention_heads, bart.num_attention_heads) == (
        8, 4, 4, 8)
    same = triformers.AutoConfig.for_model("bart", encoder_attention_heads=4, decoder_attention_heads=4)
    assert same.num_decoder_heads is None and same.replace(num_heads=8).decoder_heads == 8  # one value for both
