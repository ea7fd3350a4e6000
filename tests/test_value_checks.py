"""Values checked where they are read, with the argument, key or flag named (issue 17, classes 9 and 10).

- forward inputs (`triformers/models/inputs.py`): narrow integer ids are widened (same logits as int64); float ids,
  ids outside the vocabulary, position_ids outside the table, a mask of the wrong shape or holding 0.5 are
  InputErrors naming the tensor and the position, never a torch IndexError;
- dtype and device names (`triformers/memory.py`): transformers' strings ("bfloat16", "torch.float16") work, a
  non-floating dtype or an unknown name is an InputError naming the argument; `cuda` without CUDA is refused
  before a model moves;
- config.json: an id2label that does not name 0..num_labels-1 is a ConfigError naming the file;
- CLI flags: out-of-range values are refused by argparse with the flag named;
- output_dir (`triformers/training/output.py`): a file, a path under a file, or a disk without room for a
  checkpoint is a TrainingError before the first step.
"""

from __future__ import annotations

import json

import pytest
import torch

import triformers.training.output
from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, pipeline
from triformers.cli import main as cli_main
from triformers.errors import ConfigError, InputError, TrainingError
from triformers.training import Trainer, TrainingArguments

GPT2 = dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=8)
IDS = torch.tensor([[1, 2, 3]])
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **GPT2)).eval()


FORWARD = {
    "float ids": (dict(input_ids=IDS.float()), r"input_ids must hold integer ids, got torch\.float32"),
    "bool ids": (dict(input_ids=IDS.bool()), r"input_ids must hold integer ids, got torch\.bool"),
    "id past the vocabulary": (dict(input_ids=torch.tensor([[1, 64]])),
                               r"input_ids\[0, 1\] = 64 is outside the vocabulary \(0\.\.63\)"),
    "negative id": (dict(input_ids=torch.tensor([[-1, 2]])), r"input_ids\[0, 0\] = -1 is outside the vocabulary"),
    "position past the table": (dict(input_ids=IDS, position_ids=torch.tensor([[0, 1, 8]])),
                                r"position_ids\[0, 2\] = 8 is outside the position table \(0\.\.7\)"),
    "mask of another shape": (dict(input_ids=IDS, attention_mask=torch.ones(1, 4)),
                              r"attention_mask for input_ids must have shape \(1, 3\), got \(1, 4\)"),
    "mask holding 0.5": (dict(input_ids=IDS, attention_mask=torch.tensor([[1, 0.5, 1]])),
                         r"attention_mask\[0, 1\] = 0\.5: a mask holds 1 \(attend\) and 0 \(padding\) only"),
    "mask holding NaN": (dict(input_ids=IDS, attention_mask=torch.tensor([[1, float("nan"), 1]])),
                         r"attention_mask\[0, 1\] = nan"),
}


@pytest.mark.parametrize("case", sorted(FORWARD))
def test_a_bad_forward_input_is_an_input_error_naming_it(gpt2, case):
    kwargs, message = FORWARD[case]
    with pytest.raises(InputError, match=message):
        gpt2(**kwargs)


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_narrow_integer_ids_give_the_int64_logits(gpt2, dtype):
    expected = gpt2(input_ids=IDS).logits
    torch.testing.assert_close(gpt2(input_ids=IDS.to(dtype)).logits, expected, rtol=0, atol=0)  # same ids
    assert gpt2.generate(IDS.to(dtype), max_new_tokens=2, do_sample=False).tolist() == \
        gpt2.generate(IDS, max_new_tokens=2, do_sample=False).tolist()


def test_dtype_names_as_transformers_takes_them(gpt2, tmp_path):
    gpt2.save_pretrained(tmp_path)
    for name, dtype in (("bfloat16", torch.bfloat16), ("torch.float16", torch.float16), (torch.float64, torch.float64)):
        assert AutoModelForCausalLM.from_pretrained(tmp_path, dtype=name).dtype == dtype
        assert AutoModelForCausalLM.from_config(gpt2.config, dtype=name).dtype == dtype
    assert AutoModelForCausalLM.from_pretrained(tmp_path, dtype="auto").dtype == torch.float32
    for bad, hint in (("int8", "quantize='int8' or 'int4'"), (torch.int8, "quantize="), ("fp13", "float32, bfloat16")):
        with pytest.raises(InputError, match=rf"dtype={bad!r} is not a floating-point dtype: .*{hint}"):
            AutoModelForCausalLM.from_pretrained(tmp_path, dtype=bad)
    with pytest.raises(InputError, match=r"pipeline: dtype='int8'"):
        pipeline("text-generation", model=str(tmp_path), dtype="int8")  # before the (missing) tokenizer is read


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_by_name(gpt2, tmp_path, capsys):
    gpt2.save_pretrained(tmp_path)
    with pytest.raises(InputError, match=r"pipeline: device"):
        pipeline("text-generation", model=str(tmp_path), device="cuda")  # before the (missing) tokenizer is read
    with pytest.raises(SystemExit):
        cli_main(["generate", "--model", str(tmp_path), "--device", "cuda"])
    assert "--device: device='cuda'" in capsys.readouterr().err
    with pytest.raises(TrainingError, match=r"TrainingArguments: device"):
        TrainingArguments(output_dir=str(tmp_path / "out"), device="cuda")


def test_an_id2label_that_does_not_name_every_label_is_refused(tmp_path):
    config = AutoConfig.for_model("bert", vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for id2label, says in (({"0": "a", "5": "b"}, r"0\.\.1 \(num_labels = 2\).*key\(s\) \[5\] are outside"),
                           ({"1": "b"}, r"0\.\.0 \(num_labels = 1\).*key\(s\) \[1\] are outside")):
        (tmp_path / "config.json").write_text(json.dumps({**saved, "id2label": id2label, "label2id": None}))
        with pytest.raises(ConfigError, match=rf"config\.json: .*id2label must name the labels {says}"):
            AutoModelForSequenceClassification.from_pretrained(tmp_path)


FLAGS = [
    (["generate", "--max-new-tokens", "0"], "--max-new-tokens: must be an integer >= 1, got 0"),
    (["generate", "--num-beams", "two"], "--num-beams: expected an integer, got 'two'"),
    (["generate", "--top-p", "0"], "--top-p: must be a finite number in (0, 1], got 0"),
    (["generate", "--temperature", "nan"], "--temperature: must be a finite number >= 0, got nan"),
    (["generate", "--repetition-penalty", "0"], "--repetition-penalty: must be a finite number > 0, got 0"),
    (["generate", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
    (["fill-mask", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["generate", "--dtype", "int8"], "--dtype: dtype='int8' is not a floating-point dtype"),
    (["qa", "--question", "q", "--doc-stride", "-1"], "--doc-stride: must be an integer >= 0, got -1"),
]


@pytest.mark.parametrize("argv, message", FLAGS, ids=[" ".join(argv[1:]) for argv, _ in FLAGS])
def test_a_bad_flag_value_is_refused_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main([argv[0], "--model", "unused", *argv[1:]])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


class _Blocks(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        ids = torch.arange(i, i + 8) % 64
        return {"input_ids": ids, "labels": ids}


def test_an_output_dir_that_cannot_take_a_save_is_refused_before_training(gpt2, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("x")
    for out, says in ((tmp_path / "a-file", "is an existing file, not a folder"),
                      (tmp_path / "a-file" / "run", "lies under .*a-file, which is a file")):
        with pytest.raises(TrainingError, match=rf"output_dir=.* \(--out\) {says}"):
            TrainingArguments(output_dir=str(out))
    assert cli_main(["pretrain", "--out", str(tmp_path / "a-file")]) == 1
    assert "is an existing file, not a folder" in capsys.readouterr().err
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, disable_tqdm=True, plot_loss=False)
    full = type("Usage", (), {"free": 1024})
    monkeypatch.setattr(triformers.training.output.shutil, "disk_usage", lambda path: full)
    with pytest.raises(TrainingError, match=r"output_dir .*run: its disk has 1024 bytes \(1\.0 KiB\) free, but"):
        Trainer(gpt2, args, _Blocks())
