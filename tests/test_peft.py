"""LoRA adapters (triformers.peft) against the real peft 0.21 over transformers 5.24: adapter files move both
ways with equal logits, print_trainable_parameters gives peft's counts (and the course's 3,538,944 for
flan-t5-base at r=32 on q, v), every dialect's target names (lists, regexes, "all-linear") select peft's modules,
merging, disabling and switching adapters, and the configs refused.

Tolerance: logits atol 1e-5 (rtol 0): the adapters are random (init_lora_weights=False, B scaled down so that
the logits stay at the scale of the base model's), so the comparison tests the mapping of every A/B pair onto the
fused rows; the base models themselves agree to ~6e-6 (T5's logits are tens).
"""

from __future__ import annotations

import pytest
import torch

import triformers
from triformers.errors import CheckpointError, ConfigError
from triformers.peft import LoraConfig, PeftModel, TaskType, get_peft_model

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

FAMILIES = {  # name: (transformers class, triformers class, config, LoRA settings that cover the family's layout)
    "t5": ("T5ForConditionalGeneration", "AutoModelForSeq2SeqLM",
           dict(vocab_size=100, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                tie_word_embeddings=False, decoder_start_token_id=0, dropout_rate=0.0),
           dict(target_modules=["q", "v", "wo"], task_type="SEQ_2_SEQ_LM")),
    "t5-relu": ("T5ForConditionalGeneration", "AutoModelForSeq2SeqLM",  # T5 v1.0's feed-forward: wi, wo
                dict(vocab_size=100, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, feed_forward_proj="relu",
                     decoder_start_token_id=0, dropout_rate=0.0),
                dict(target_modules=["q", "v", "wi"], task_type="SEQ_2_SEQ_LM")),
    "bart": ("BartForConditionalGeneration", "AutoModelForSeq2SeqLM",
             dict(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64),
             dict(target_modules=["q_proj", "v_proj", "fc1"], task_type="SEQ_2_SEQ_LM", rank_pattern={"fc1": 2})),
    "gpt2": ("GPT2LMHeadModel", "AutoModelForCausalLM",
             dict(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0),
             dict(target_modules=["c_attn", "c_proj"], task_type="CAUSAL_LM", bias="all")),
    "bloom": ("BloomForCausalLM", "AutoModelForCausalLM",
              dict(vocab_size=100, hidden_size=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0),
              dict(target_modules=["query_key_value", "dense_4h_to_h"], task_type="CAUSAL_LM", bias="lora_only")),
    "llama": ("LlamaForCausalLM", "AutoModelForCausalLM",  # q|k|v and gate|up fused in ours, GQA, rotary
              dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                   tie_word_embeddings=False),
              dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   task_type="CAUSAL_LM", rank_pattern={"up_proj": 2})),
    "qwen2": ("Qwen2ForCausalLM", "AutoModelForCausalLM",  # q, k, v with biases: trained bias slices
              dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0),
              dict(target_modules=["k_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM", bias="lora_only")),
    "bert": ("BertForSequenceClassification", "AutoModelForSequenceClassification",
             dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
             dict(target_modules=["query", "value", "dense"], task_type="SEQ_CLS", bias="lora_only")),
}
CONFIGS = {"t5": "T5Config", "t5-relu": "T5Config", "bart": "BartConfig", "gpt2": "GPT2Config", "bloom": "BloomConfig",
           "llama": "LlamaConfig", "qwen2": "Qwen2Config", "bert": "BertConfig"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random checkpoint per family, saved by transformers."""
    root = tmp_path_factory.mktemp("peft-bases")
    folders = {}
    for name, (hf_class, _, config, _) in FAMILIES.items():
        torch.manual_seed(0)
        config_class = getattr(transformers, CONFIGS[name])
        getattr(transformers, hf_class)(config_class(**config)).save_pretrained(root / name)
        folders[name] = root / name
    return folders


def logits(model, family: str, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        if FAMILIES[family][1] == "AutoModelForSeq2SeqLM":
            return model(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
        return model(input_ids=ids).logits


def randomise(model) -> None:
    """Non-zero adapters (and trained biases) of moderate size, as a few training steps would leave them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.mul_(0.3).add_(torch.randn_like(param) * 0.05)


def peft_adapter(folder, family: str, seed: int = 0, **overrides):
    hf_class, _, _, settings = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(transformers, hf_class).from_pretrained(folder)
    config = peft.LoraConfig(**{"r": 4, "lora_alpha": 8, "init_lora_weights": False, **settings, **overrides})
    return peft.get_peft_model(model, config)


def ids_for(seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_peft_adapter_loads_with_equal_logits(checkpoints, family, tmp_path):
    reference = peft_adapter(checkpoints[family], family)
    randomise(reference)
    reference.save_pretrained(tmp_path / "peft")
    base = getattr(triformers, FAMILIES[family][1]).from_pretrained(checkpoints[family])
    ours = PeftModel.from_pretrained(base, tmp_path / "peft", is_trainable=True)
    ids = ids_for()
    torch.testing.assert_close(logits(ours, family, ids), logits(reference, family, ids), atol=1e-5, rtol=0)
    assert ours.get_nb_trainable_parameters() == reference.get_nb_trainable_parameters()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_triformers_adapter_loads_in_peft(checkpoints, family, tmp_path):
    settings = FAMILIES[family][3]
    base = getattr(triformers, FAMILIES[family][1]).from_pretrained(checkpoints[family])
    torch.manual_seed(0)
    ours = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **settings))
    randomise(ours)
    reference_counts = peft_adapter(checkpoints[family], family).get_nb_trainable_parameters()
    assert ours.get_nb_trainable_parameters() == reference_counts
    ours.save_pretrained(tmp_path / "ours")
    hf = getattr(transformers, FAMILIES[family][0]).from_pretrained(checkpoints[family])
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "ours")
    ids = ids_for(1)
    torch.testing.assert_close(logits(theirs, family, ids), logits(ours, family, ids), atol=1e-5, rtol=0)


def test_print_trainable_parameters_as_peft_and_the_course(checkpoints, capsys):
    """The course's figure for flan-t5-base at r=32 on q, v, from the shapes alone (both models on the meta device),
    and peft's printed line for it."""
    hf_config = dict(vocab_size=32128, d_model=768, d_ff=2048, d_kv=64, num_layers=12, num_heads=12,
                     feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0)
    lora = dict(r=32, lora_alpha=32, target_modules=["q", "v"], lora_dropout=0.05, bias="none")
    with torch.device("meta"):
        ours = get_peft_model(triformers.EncoderDecoderModel(
            triformers.dialects.get_dialect("t5").config_from_hf(hf_config, "flan-t5-base"), head="lm"),
            LoraConfig(**lora, task_type=TaskType.SEQ_2_SEQ_LM))
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config))
        hf.lm_head.weight = torch.nn.Parameter(torch.empty(32128, 768))  # untied, as the real checkpoint is
        theirs = peft.get_peft_model(hf, peft.LoraConfig(**lora, task_type=peft.TaskType.SEQ_2_SEQ_LM))
    assert ours.get_nb_trainable_parameters() == (3538944, 251116800) == theirs.get_nb_trainable_parameters()
    ours.print_trainable_parameters()
    mine = capsys.readouterr().out
    theirs.print_trainable_parameters()
    expected = "trainable params: 3,538,944 || all params: 251,116,800 || trainable%: 1.4093\n"
    assert mine == capsys.readouterr().out == expected


def test_merge_unload_and_disable(checkpoints):
    """Merged: B A * scale added into the rows of the fused weights; the logits agree to fp32 rounding of T5's
    (tens: atol 1e-5 plus rtol 1e-6, since merging reorders the sums); disabled: the base model's, exactly."""
    base = triformers.AutoModelForSeq2SeqLM.from_pretrained(checkpoints["t5"])
    ids = ids_for(2)
    plain = logits(base, "t5", ids)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q", "k", "v", "o", "wi_0"], init_lora_weights=False))
    randomise(model)
    adapted = logits(model, "t5", ids)
    assert (adapted - plain).abs().max() > 1e-2  # the adapter changes the model
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, "t5", ids), plain, atol=0, rtol=0)
    torch.testing.assert_close(logits(model, "t5", ids), adapted, atol=0, rtol=0)
    merged = model.merge_and_unload()
    assert type(merged.encoder.layers[0].attn.qkv) is triformers.layers.linear.Linear
    torch.testing.assert_close(logits(merged, "t5", ids), adapted, atol=1e-5, rtol=1e-6)


def test_merge_into_llamas_fused_projections(checkpoints):
    """all-linear on Llama: q, k, v merged into rows of one qkv (k and v of fewer heads), gate and up into gate_up."""
    base = triformers.AutoModelForCausalLM.from_pretrained(checkpoints["llama"])
    ids = ids_for(4)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    randomise(model)
    adapted = logits(model, "llama", ids)
    merged = model.merge_and_unload()
    assert type(merged.decoder.layers[0].mlp.gate_up) is triformers.layers.linear.Linear
    torch.testing.assert_close(logits(merged, "llama", ids), adapted, atol=1e-5, rtol=1e-6)


def test_unload_gives_the_base_model_back(checkpoints):
    base = triformers.AutoModelForCausalLM.from_pretrained(checkpoints["gpt2"])
    ids = ids_for(3)
    plain = logits(base, "gpt2", ids)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False))
    assert model.peft_config["default"].fan_in_fan_out  # set as peft sets it for GPT-2's Conv1D
    unloaded = model.unload()
    assert unloaded is base and not any("lora" in n for n, _ in unloaded.named_parameters())
    torch.testing.assert_close(logits(unloaded, "gpt2", ids), plain, atol=0, rtol=0)


def test_named_adapters_switch_and_delete(checkpoints, tmp_path):
    family = "bart"
    folders = {}
    for seed, name in ((5, "first"), (6, "second")):
        reference = peft_adapter(checkpoints[family], family, seed)
        randomise(reference)
        reference.save_pretrained(tmp_path / name)
        folders[name] = (tmp_path / name, logits(reference, family, ids_for(4)))
    base = triformers.AutoModelForSeq2SeqLM.from_pretrained(checkpoints[family])
    model = PeftModel.from_pretrained(base, folders["first"][0], adapter_name="first")
    model.load_adapter(folders["second"][0], adapter_name="second")
    assert model.active_adapter == "first" and set(model.peft_config) == {"first", "second"}
    torch.testing.assert_close(logits(model, family, ids_for(4)), folders["first"][1], atol=1e-5, rtol=0)
    model.set_adapter("second")
    torch.testing.assert_close(logits(model, family, ids_for(4)), folders["second"][1], atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "both")  # a non-default adapter goes into its own subfolder, as peft
    assert (tmp_path / "both" / "first" / "adapter_model.safetensors").is_file()
    model.delete_adapter("second")
    assert model.active_adapter == "first"
    torch.testing.assert_close(logits(model, family, ids_for(4)), folders["first"][1], atol=1e-5, rtol=0)


def test_bf16_base_keeps_float32_adapters_as_peft(checkpoints, tmp_path):
    reference = peft_adapter(checkpoints["gpt2"], "gpt2")
    randomise(reference)
    reference.save_pretrained(tmp_path / "peft")
    hf = transformers.GPT2LMHeadModel.from_pretrained(checkpoints["gpt2"], dtype=torch.bfloat16)
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "peft")
    base = triformers.AutoModelForCausalLM.from_pretrained(checkpoints["gpt2"], dtype=torch.bfloat16)
    ours = PeftModel.from_pretrained(base, tmp_path / "peft", torch_dtype=torch.bfloat16)
    dtypes = {p.dtype for n, p in ours.named_parameters() if "lora_" in n}
    assert dtypes == {p.dtype for n, p in theirs.named_parameters() if "lora_" in n} == {torch.float32}
    ids = ids_for(5)
    got, want = logits(ours, "gpt2", ids), logits(theirs, "gpt2", ids)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=0.1, rtol=0.02)  # bf16: ~3 significant digits


def test_generate_with_an_adapter_as_peft(checkpoints, tmp_path):
    reference = peft_adapter(checkpoints["gpt2"], "gpt2")
    randomise(reference)
    reference.save_pretrained(tmp_path / "peft")
    base = triformers.AutoModelForCausalLM.from_pretrained(checkpoints["gpt2"])
    ours = PeftModel.from_pretrained(base, tmp_path / "peft")
    prompt = ids_for(6)
    want = reference.generate(input_ids=prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(input_ids=prompt, max_new_tokens=8, do_sample=False), want)


def test_modules_to_save_trains_and_saves_the_head(checkpoints, tmp_path):
    """SEQ_CLS adds the classifier to modules_to_save (peft's task class): trained as a copy, saved under
    transformers' names, the original kept for disable_adapter."""
    base = triformers.AutoModelForSequenceClassification.from_pretrained(checkpoints["bert"])
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["query"], task_type="SEQ_CLS"))
    assert model.peft_config["default"].modules_to_save == ["classifier", "score"]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert [n for n in trainable if "lora_" not in n] == [
        "base_model.model.classifier.out.modules_to_save.default.bias",
        "base_model.model.classifier.out.modules_to_save.default.weight"]
    model.save_pretrained(tmp_path / "cls")
    from safetensors.torch import load_file

    keys = set(load_file(tmp_path / "cls" / "adapter_model.safetensors"))
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= keys


def test_configs_refused_by_name(checkpoints, tmp_path):
    base = triformers.AutoModelForSeq2SeqLM.from_pretrained(checkpoints["t5"])
    with pytest.raises(ConfigError, match="use_dora"):
        LoraConfig(use_dora=True)
    with pytest.raises(ConfigError, match="init_lora_weights"):
        LoraConfig(init_lora_weights="pissa")
    with pytest.raises(TypeError, match="rank"):
        LoraConfig(rank=8)
    with pytest.raises(ConfigError, match="not found in the base model"):
        get_peft_model(base, LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="not a linear layer"):
        get_peft_model(base, LoraConfig(target_modules=["shared"]))
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "target_modules": ["q"], '
                                                  '"future_field": {"on": true}}')
    with pytest.raises(ConfigError, match="future_field"):
        LoraConfig.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="is_trainabel"):
        PeftModel.from_pretrained(base, tmp_path, is_trainabel=True)


def test_adapter_for_another_model_is_refused(checkpoints, tmp_path):
    reference = peft_adapter(checkpoints["t5"], "t5", r=8)
    reference.save_pretrained(tmp_path / "peft")
    base = triformers.AutoModelForSeq2SeqLM.from_pretrained(checkpoints["t5"])
    with pytest.raises(CheckpointError, match=r"lora_A.weight has shape \(8, 32\), this model needs \(4, 32\)"):
        PeftModel.from_pretrained(base, tmp_path / "peft", config=LoraConfig(r=4, target_modules=["q", "v", "wo"]))


TARGETS = [  # (family, target_modules): every transformers module name of each dialect, regexes, "all-linear"
    ("t5", ["q", "k", "v", "o", "wi_0", "wi_1", "wo"]),
    ("t5", r".*decoder.*\.(q|v|EncDecAttention\.k)"),
    ("t5", "all-linear"),
    ("t5-relu", ["wi", "wo", "q", "o"]),
    ("t5-relu", "all-linear"),
    ("bart", ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]),
    ("bart", r"model\.encoder\.layers\.1\..*_proj"),
    ("bart", "all-linear"),
    ("gpt2", ["c_attn", "c_proj", "c_fc"]),
    ("gpt2", r".*h\.1\.(mlp\.c_fc|attn\.c_attn)"),
    ("gpt2", "all-linear"),
    ("bert", ["query", "key", "value", "dense"]),
    ("bert", "all-linear"),
    ("bloom", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    ("llama", "all-linear"),
    ("llama", r".*layers\.1\.(self_attn\.q_proj|mlp\.gate_proj)"),
    ("qwen2", ["q_proj", "o_proj", "gate_proj", "down_proj"]),
    ("gpt2", {"target_modules": ["c_attn", "c_fc"], "layers_to_transform": [1]}),
    ("t5", {"target_modules": ["q", "wi_1"], "layers_to_transform": 0, "layers_pattern": "block"}),
]


@pytest.mark.parametrize("family, targets", TARGETS, ids=lambda v: v if isinstance(v, str) else ",".join(map(str, v)))
def test_target_names_select_what_peft_selects(checkpoints, family, targets, tmp_path):
    """Each dialect's transformers names, a regex and "all-linear" put LoRA on the modules peft puts it on (the
    same adapter keys and counts), and peft's adapter over them gives our logits to atol 1e-5."""
    settings = targets if isinstance(targets, dict) else {"target_modules": targets}
    reference = peft_adapter(checkpoints[family], family, **settings, rank_pattern={})
    randomise(reference)
    reference.save_pretrained(tmp_path / "peft")
    base = getattr(triformers, FAMILIES[family][1]).from_pretrained(checkpoints[family])
    ours = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                           **{**FAMILIES[family][3], **settings, "rank_pattern": {}}))
    assert ours.get_nb_trainable_parameters() == reference.get_nb_trainable_parameters()
    ours.save_pretrained(tmp_path / "ours")
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "ours" / "adapter_model.safetensors")) == set(
        load_file(tmp_path / "peft" / "adapter_model.safetensors"))
    loaded = PeftModel.from_pretrained(getattr(triformers, FAMILIES[family][1]).from_pretrained(checkpoints[family]),
                                       tmp_path / "peft")
    ids = ids_for(7)
    torch.testing.assert_close(logits(loaded, family, ids), logits(reference, family, ids), atol=1e-5, rtol=0)
