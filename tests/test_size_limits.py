"""Size limits bound the product, not each field (triformers/memory.py).

- the parameter count a config implies equals `sum(p.numel())` of the model built from it, for every registered
  dialect, head and variant (built on the meta device: nothing is allocated);
- a config whose parameters do not fit in the machine's memory is refused by `from_config` and `from_pretrained`
  before anything is allocated, in a child process under an address-space limit (were the check missing, the
  allocation would fail there with torch's own error, not ours);
- `generate` refuses a decode state (KV cache x beams x positions) beyond the memory left beside the model;
- the machine's memory honours cgroup limits (v1 and v2) and RLIMIT_AS.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from conftest import run_limited

import triformers.memory
from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
from triformers.dialects import DIALECTS
from triformers.errors import ConfigError, InputError
from triformers.memory import buffer_count, cgroup_limits, machine_memory, parameter_count
from triformers.models import DecoderModel, EncoderDecoderModel, EncoderModel

CLASSES = {cls.family: cls for cls in (EncoderModel, DecoderModel, EncoderDecoderModel)}
SMALL = dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=24)
FLIPS = ("tie_word_embeddings", "bias", "gated_mlp", "embedding_norm", "final_norm", "pooler")


def counted(config, family: str, head):
    with torch.device("meta"):
        model = CLASSES[family](config, head=head)
    return sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers())


def variants(model_type: str):
    """A small config of the dialect, then each variant flag flipped, other labels and (encoder-decoders) stacks
    of their own sizes."""
    base = AutoConfig.for_model(model_type)
    kv = {"num_kv_heads": 2} if base.num_kv_heads is not None else {}  # grouped-query dialects: 2 groups of 2
    if getattr(base, "sliding_window_layers", None):  # Gemma 2/3's pattern, cut to the small stack's layers
        kv["sliding_window_layers"] = tuple(i for i in base.sliding_window_layers if i < SMALL["num_layers"])
    small = base.replace(**SMALL, **kv, head_dim=8 if base.positions == "rotary" else None,
                         max_positions=min(base.max_positions, 40))
    yield small
    for name in FLIPS:
        yield small.replace(**{name: not getattr(small, name)})
    yield small.replace(num_labels=3, type_vocab_size=small.type_vocab_size + 1, head_dim=8)
    if DIALECTS[model_type].family == "encoder-decoder":
        yield small.replace(num_decoder_layers=3, num_decoder_heads=4, decoder_intermediate_size=40)


@pytest.mark.parametrize("model_type", sorted(DIALECTS))
def test_the_parameter_count_is_exact_for_every_dialect_head_and_variant(model_type):
    family = DIALECTS[model_type].family
    for config, head in itertools.product(variants(model_type), CLASSES[family].heads):
        expected = counted(config, family, head)
        assert (parameter_count(config, family, head), buffer_count(config, family, head)) == expected, \
            (model_type, head, config)


HUGE = {"from_config": {"vocab_size": 2**24, "n_embd": 2**17, "n_layer": 1, "n_head": 1, "n_positions": 8},
        "layers": {"vocab_size": 64, "n_embd": 8192, "n_layer": 4096, "n_head": 8, "n_positions": 8}}
REFUSE_CONFIG = """
    import json, sys
    from triformers import AutoConfig, AutoModelForCausalLM
    from triformers.errors import ConfigError
    try:
        if sys.argv[1] == "from_config":
            AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **json.loads(sys.argv[2])))
        else:
            AutoModelForCausalLM.from_pretrained(sys.argv[2])
    except ConfigError as err:
        print("refused:", err)
"""


@pytest.mark.parametrize("sizes", sorted(HUGE))
def test_a_config_whose_parameters_exceed_memory_is_refused_by_from_config(sizes):
    done = run_limited(REFUSE_CONFIG, "from_config", json.dumps(HUGE[sizes]), memory=3 * 2**30)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "refused:" in done.stdout and "parameters" in done.stdout, done.stdout
    assert "bytes" in done.stdout and "this machine has" in done.stdout


def test_a_config_whose_parameters_exceed_memory_is_refused_by_from_pretrained(tmp_path):
    torch.manual_seed(0)
    small = AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=8)
    AutoModelForCausalLM.from_config(small).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **HUGE["from_config"]}))
    done = run_limited(REFUSE_CONFIG, "from_pretrained", str(tmp_path), memory=3 * 2**30)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "refused:" in done.stdout and "config.json" in done.stdout, done.stdout


def test_the_bound_is_taken_in_the_dtype_the_model_loads_in(tmp_path, monkeypatch):
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2,
                                                          n_positions=8)).save_pretrained(tmp_path)
    fp32 = AutoModelForCausalLM.from_pretrained(tmp_path)
    size = sum(p.numel() for p in fp32.parameters()) * 4
    monkeypatch.setattr(triformers.memory, "machine_memory", lambda device=None: (size * 3 // 4, "a test bound"))
    assert AutoModelForCausalLM.from_pretrained(tmp_path, dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match=rf"config\.json: .*{size} bytes .* in float32; this machine has .*a test"):
        AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="in float32"):  # from_config builds in float32, then casts
        AutoModelForCausalLM.from_config(fp32.config, dtype=torch.bfloat16)


REFUSE_GENERATE = """
    import sys, torch
    from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    from triformers.errors import InputError
    if sys.argv[1] == "t5":  # the issue's case: one layer, 4096 beams, 2**20 positions
        config = AutoConfig.for_model("t5", vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
        model, kwargs = AutoModelForSeq2SeqLM.from_config(config), dict(num_beams=4096)
    else:  # ALiBi: no position table; sampling 4096 return sequences
        config = AutoConfig.for_model("bloom", vocab_size=32, hidden_size=8, n_layer=1, n_head=2)
        model, kwargs = AutoModelForCausalLM.from_config(config), dict(do_sample=True, num_return_sequences=4096)
    try:
        model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2**20 - 3, **kwargs)
    except InputError as err:
        print("refused:", err)
"""


@pytest.mark.parametrize("model_type", ["t5", "bloom"])
def test_generate_refuses_a_decode_state_beyond_memory(model_type):
    done = run_limited(REFUSE_GENERATE, model_type, memory=3 * 2**30)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "refused:" in done.stdout and "KV cache" in done.stdout and "this machine has" in done.stdout, done.stdout


def test_generate_within_memory_still_runs(monkeypatch):
    torch.manual_seed(0)
    config = AutoConfig.for_model("t5", vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    assert model.generate(torch.tensor([[1, 2, 3]]), num_beams=4, max_new_tokens=5).shape[0] == 1
    monkeypatch.setattr(triformers.memory, "machine_memory", lambda device=None: (2**16, "a test bound"))
    with pytest.raises(InputError, match=r"generate: 1 prompt\(s\) x num_beams=64 .*a test bound"):
        model.generate(torch.tensor([[1, 2, 3]]), num_beams=64, max_new_tokens=200)


def test_machine_memory_is_the_smallest_of_physical_cgroup_and_address_space_limits(tmp_path):
    (tmp_path / "v2" / "a" / "b").mkdir(parents=True)
    (tmp_path / "v2" / "memory.max").write_text("max\n")
    (tmp_path / "v2" / "a" / "memory.max").write_text(f"{3 * 2**30}\n")
    (tmp_path / "v2" / "a" / "b" / "memory.max").write_text("max\n")
    (tmp_path / "v2.cgroup").write_text("0::/a/b\n")
    assert cgroup_limits(tmp_path / "v2", tmp_path / "v2.cgroup") == [3 * 2**30]
    (tmp_path / "v1" / "memory" / "x").mkdir(parents=True)
    (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # "no limit"
    (tmp_path / "v1" / "memory" / "x" / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    (tmp_path / "v1.cgroup").write_text("5:devices:/x\n4:memory:/x\n")
    assert cgroup_limits(tmp_path / "v1", tmp_path / "v1.cgroup") == [2**30]
    have, bound = machine_memory()
    assert 0 < have and bound
    done = run_limited("from triformers.memory import machine_memory; print(machine_memory())", memory=3 * 2**30)
    assert "(3221225472, 'the address-space limit (RLIMIT_AS)')" in done.stdout, done.stderr[-1500:]
