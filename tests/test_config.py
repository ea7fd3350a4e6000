"""AutoConfig: reading config.json through a dialect, overrides in Hugging Face key names, configs
from scratch, and errors that name the file, the key and the position of a malformed config."""

from __future__ import annotations

import json

import pytest
import torch

from triformers import AutoConfig, AutoModel, ConfigError, ModelConfig

BERT = {"model_type": "bert", "vocab_size": 211, "hidden_size": 36, "num_hidden_layers": 3,
        "num_attention_heads": 3, "intermediate_size": 50, "max_position_embeddings": 32,
        "layer_norm_eps": 1e-7, "hidden_act": "gelu_new"}


def write_config(folder, config: dict | str):
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (folder / "config.json").write_text(text)
    return folder


def test_bert_config_json_becomes_variant_flags(tmp_path):
    config = AutoConfig.from_pretrained(write_config(tmp_path, BERT))
    assert (config.model_type, config.vocab_size, config.hidden_size, config.num_layers, config.num_heads,
            config.intermediate_size, config.max_positions) == ("bert", 211, 36, 3, 3, 50, 32)
    assert (config.norm_eps, config.activation, config.norm_placement) == (1e-7, "gelu_tanh", "post")
    assert config.embedding_norm and config.pooler and not config.positions_from_padding
    assert config.type_vocab_size == 2 and config.pad_token_id == 0  # BERT's defaults


def test_roberta_counts_positions_from_padding(tmp_path):
    config = AutoConfig.from_pretrained(write_config(tmp_path, {**BERT, "model_type": "roberta", "pad_token_id": 1}))
    assert config.positions_from_padding and config.pad_token_id == 1 and config.classifier == "dense_tanh"


def test_overrides_use_hugging_face_key_names(tmp_path):
    folder = write_config(tmp_path, BERT)
    config = AutoConfig.from_pretrained(folder, num_hidden_layers=2, hidden_act="gelu",
                                        id2label={0: "no", 1: "maybe", 2: "yes"})
    assert config.num_layers == 2 and config.activation == "gelu"
    assert config.num_labels == 3 and config.label2id == {"no": 0, "maybe": 1, "yes": 2}
    assert AutoConfig.from_pretrained(folder).num_layers == 3, "overrides must not change the file"
    with pytest.raises(ConfigError, match=r"'num_hidden_layers' must be int, got str 'two'"):
        AutoConfig.from_pretrained(folder, num_hidden_layers="two")


def test_num_labels_override_gives_fresh_label_names(tmp_path):
    folder = write_config(tmp_path, {**BERT, "id2label": {"0": "bad", "1": "good"}})
    assert AutoConfig.from_pretrained(folder).id2label == {0: "bad", 1: "good"}
    config = AutoConfig.from_pretrained(folder, num_labels=4)
    assert config.num_labels == 4 and config.labels() == {i: f"LABEL_{i}" for i in range(4)}


def test_for_model_builds_a_config_from_scratch():
    config = AutoConfig.for_model("bert", hidden_size=56, num_hidden_layers=2, num_attention_heads=7,
                                  intermediate_size=90, vocab_size=333)
    assert isinstance(config, ModelConfig)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.attention_head_dim) == (56, 2, 7, 8)
    assert config.max_positions == 512 and config.norm_eps == 1e-12  # BERT's defaults fill the rest
    model = AutoModel.from_config(config)
    assert model.embed_tokens.weight.shape == (333, 56)
    assert AutoConfig.for_model("roberta").vocab_size == 50265
    with pytest.raises(ConfigError, match=r"unknown model_type 'bret'; supported: .*bert.*roberta"):
        AutoConfig.for_model("bret")


def test_unused_keys_survive_a_save(tmp_path):
    """Keys triformers does not read (here a custom one and position_embedding_type) are written back."""
    (tmp_path / "in").mkdir()
    folder = write_config(tmp_path / "in", {**BERT, "my_custom_key": [1, 2], "position_embedding_type": "absolute"})
    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    model.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["my_custom_key"] == [1, 2] and saved["position_embedding_type"] == "absolute"
    assert saved["architectures"] == ["BertModel"] and saved["hidden_act"] == "gelu_new"
    # the round trip gives the same config; default labels are not written out (transformers omits them too)
    reread, original = AutoConfig.from_pretrained(tmp_path / "out"), AutoConfig.from_pretrained(folder)
    assert "id2label" not in saved and reread.labels() == original.labels() == {0: "LABEL_0", 1: "LABEL_1"}
    assert reread == original


# --- malformed configs: each error names the file and the culprit -----------------------------------

def test_json_syntax_error_names_line_and_column(tmp_path):
    write_config(tmp_path, '{\n  "model_type": "bert",\n  "hidden_size": 36,,\n}')
    with pytest.raises(ConfigError, match=r"malformed config.json .*config.json: .* at line 3 column 21"):
        AutoConfig.from_pretrained(tmp_path)


def test_config_that_is_not_an_object(tmp_path):
    write_config(tmp_path, "[1, 2]")
    with pytest.raises(ConfigError, match=r"expected a JSON object, got list"):
        AutoConfig.from_pretrained(tmp_path)


def test_missing_config_json(tmp_path):
    with pytest.raises(ConfigError, match=r"config.json not found: .*config.json"):
        AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("key,value,expected", [
    ("hidden_size", "big", r"'hidden_size' must be int, got str 'big'"),
    ("num_attention_heads", 2.5, r"'num_attention_heads' must be int, got float 2.5"),
    ("layer_norm_eps", "1e-12", r"'layer_norm_eps' must be float, got str"),
    ("vocab_size", True, r"'vocab_size' must be int, got bool True"),
    ("hidden_act", "swishy", r"hidden_act 'swishy' is not supported"),
    ("num_hidden_layers", 0, r"num_layers must be a positive integer, got 0"),
    ("hidden_dropout_prob", 1.5, r"dropout must be in \[0, 1\), got 1.5"),
])
def test_wrong_types_and_values_name_the_key(tmp_path, key, value, expected):
    write_config(tmp_path, {**BERT, key: value})
    with pytest.raises(ConfigError, match=expected) as err:
        AutoConfig.from_pretrained(tmp_path)
    assert "config.json" in str(err.value) or "config (bert)" in str(err.value)


def test_hidden_size_not_divisible_by_heads(tmp_path):
    write_config(tmp_path, {**BERT, "hidden_size": 50})
    with pytest.raises(ConfigError, match=r"hidden_size 50 is not divisible by num_heads 3"):
        AutoConfig.from_pretrained(tmp_path)


def test_unknown_model_type_lists_the_supported_ones(tmp_path):
    write_config(tmp_path, {**BERT, "model_type": "electra"})
    with pytest.raises(ConfigError) as err:
        AutoConfig.from_pretrained(tmp_path)
    message = str(err.value)
    assert "'electra'" in message and str(tmp_path / "config.json") in message
    assert all(name in message for name in ("bert", "roberta", "gpt2"))


def test_missing_model_type(tmp_path):
    write_config(tmp_path, {k: v for k, v in BERT.items() if k != "model_type"})
    with pytest.raises(ConfigError, match=r"missing or invalid 'model_type'"):
        AutoConfig.from_pretrained(tmp_path)


def test_replace_validates_and_rejects_unknown_fields():
    config = AutoConfig.for_model("bert", hidden_size=36, num_attention_heads=3)
    assert config.replace(num_layers=1).num_layers == 1
    with pytest.raises(ConfigError, match=r"unknown ModelConfig fields: \['num_hidden_layers'\]"):
        config.replace(num_hidden_layers=1)
    with pytest.raises(ConfigError, match=r"hidden_size 37 is not divisible by num_heads 3"):
        config.replace(hidden_size=37)
