"""Files that could take the process down, hang it, lead it out of its folder, or reach a raw exception.

- tokenizer files that make `tokenizers` allocate gigabytes or panic (each abort case in a child process
  under a memory limit: should it regress, it would abort the process running it);
- special files in place of any file triformers reads (a FIFO, a link to /dev/zero, a folder) and JSON
  nested 100,000 deep: a clear error naming the file, never a hang (guarded by an alarm) or a RecursionError;
- names from files (`refs/main`, a `revision`) that would leave the Hugging Face cache;
- values read from tokenizer_config.json, legacy vocabulary files, fine-tuning data files, resume files,
  and `classify --json`'s output for NaN scores.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import struct

import pytest
import torch
from conftest import asset, run_limited

from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from triformers.errors import ModelNotFoundError, TokenizerError, TriformersError
from triformers.finetuning.data import read_records, read_squad
from triformers.io.hub import resolve
from triformers.pretraining.corpus import iter_documents
from triformers.tokenization import train_tokenizer
from triformers.training import Trainer, TrainingArguments, TrainingError
from triformers.training.checkpoints import read_state
from triformers.training.metrics import read_metrics, truncate_metrics

BAD_CHARSMAP = struct.pack("<I", 0xFFFFFFF0) + b"\0" * 12  # 16 bytes that claim a 4 GiB trie
GPT2 = dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A GPT-2 checkpoint with a (Unigram) tokenizer beside it."""
    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **GPT2)).save_pretrained(out)
    train_tokenizer(["hello world", "a small corpus of words"] * 5, kind="unigram", vocab_size=60,
                    model_max_length=16).save_pretrained(str(out))
    return out


@pytest.fixture
def copy(folder, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@contextlib.contextmanager
def alarm(seconds: int = 20):
    """Fail instead of hanging: an open() that would block forever is interrupted."""
    def fire(*_):
        raise TimeoutError(f"hung for {seconds} s")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- 4. tokenizer files that would abort the process or panic ---------------------------------------------
ABORT_CASE = """
    import sys
    from triformers import AutoTokenizer
    from triformers.errors import TokenizerError
    try:
        AutoTokenizer.from_pretrained(sys.argv[1])("hello")
    except TokenizerError as err:
        print("refused:", err)
"""


def test_a_charsmap_claiming_a_huge_trie_is_refused_in_tokenizer_json(copy):
    edit_json(copy / "tokenizer.json", lambda d: d.update(normalizer={
        "type": "Precompiled", "precompiled_charsmap": base64.b64encode(BAD_CHARSMAP).decode()}))
    done = run_limited(ABORT_CASE, str(copy), memory=2 * 2**30)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "refused:" in done.stdout and "tokenizer.json" in done.stdout and "precompiled_charsmap" in done.stdout


def test_a_charsmap_claiming_a_huge_trie_is_refused_in_spiece_model(tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(asset("spm-tokenizer/spiece.model").read_bytes())
    proto.normalizer_spec.precompiled_charsmap = BAD_CHARSMAP
    (tmp_path / "spiece.model").write_bytes(proto.SerializeToString())
    done = run_limited(ABORT_CASE, str(tmp_path), memory=2 * 2**30)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "refused:" in done.stdout and "spiece.model" in done.stdout


@pytest.mark.parametrize("component", ["charsmap", "regex"])
def test_a_backend_panic_is_a_tokenizer_error_and_the_tokenizer_lives_on(copy, component):
    if component == "charsmap":  # fits its size, but its trie points outside itself: panics when used
        charsmap = struct.pack("<I", 8) + struct.pack("<II", 12345, 999) + b"abc\0"
        edit_json(copy / "tokenizer.json", lambda d: d.update(normalizer={
            "type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}))
        text = "hello"
    else:  # a backtracking regex hits Oniguruma's retry limit, which the backend turns into a panic
        edit_json(copy / "tokenizer.json", lambda d: d.update(pre_tokenizer={
            "type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}))
        text = "a" * 33 + "b"
    tokenizer = AutoTokenizer.from_pretrained(str(copy))
    calls = (lambda: tokenizer(text), lambda: tokenizer([text, text], padding=True), lambda: tokenizer.tokenize(text))
    for call in calls:
        with pytest.raises(TokenizerError, match="tokenizers library failed"):
            call()
    if component == "regex":
        assert tokenizer("hello world")["input_ids"]


# ---- 6. special files and deep nesting ----------------------------------------------------------------------
def _load_model(folder):
    return AutoModelForCausalLM.from_pretrained(folder)


def _load_tokenizer(folder):
    return AutoTokenizer.from_pretrained(str(folder))


READERS = {  # file -> what reads it
    "config.json": _load_model, "model.safetensors": _load_model, "model.safetensors.index.json": _load_model,
    "tokenizer.json": _load_tokenizer, "tokenizer_config.json": _load_tokenizer,
    "special_tokens_map.json": _load_tokenizer,
    "trainer_state.pt": lambda f: read_state(f / "trainer_state.pt"),
    "metrics.jsonl": lambda f: read_metrics(f / "metrics.jsonl"),
    "train.jsonl": lambda f: read_records(f / "train.jsonl"),
    "corpus.jsonl": lambda f: list(iter_documents([f / "corpus.jsonl"])),
}


def _special(path, kind: str) -> None:
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder"])
@pytest.mark.parametrize("name", sorted(READERS))
def test_a_special_file_in_place_of_any_file_is_refused_by_name(copy, name, kind):
    _special(copy / name, kind)
    with alarm(), pytest.raises(TriformersError, match=name.replace(".", r"\.")) as err:
        READERS[name](copy)
    assert "not a regular file" in str(err.value) or "not found" in str(err.value)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json", "train.jsonl", "squad.json",
                                  "corpus.jsonl"])
def test_json_nested_100000_deep_is_refused_by_name(copy, name):
    (copy / name).write_text("[" * 100_000 + "]" * 100_000 if name.endswith("jsonl") else
                             '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    read = {"squad.json": lambda f: read_squad(f / "squad.json"), **READERS}[name]
    with pytest.raises(TriformersError, match=rf"{name.replace('.', '[.]')}.*nested too deeply"):
        read(copy)


# ---- 7. names from files never leave the cache ------------------------------------------------------------
def _cache(tmp_path, ref: str | None):
    repo = tmp_path / "hub" / "models--org--name"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit if ref is None else ref)
    (tmp_path / "outside").mkdir()
    return tmp_path / "hub", repo / "snapshots" / commit


@pytest.mark.parametrize("ref", ["../../../outside", "/etc", "", "main"], ids=repr)
def test_a_ref_file_that_is_not_a_commit_hash_is_refused(tmp_path, monkeypatch, ref):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache, _ = _cache(tmp_path, ref)
    with pytest.raises(ModelNotFoundError, match=r"refs/main holds .* not a commit hash; refused"):
        resolve("org/name", cache_dir=cache)


@pytest.mark.parametrize("revision", ["../../../outside", "/etc", "a/../../b", "..", "main/"], ids=repr)
def test_a_revision_that_would_leave_the_cache_is_refused(tmp_path, monkeypatch, revision):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache, _ = _cache(tmp_path, None)
    with pytest.raises(ModelNotFoundError, match=r"is not a commit hash or a ref name"):
        resolve("org/name", revision=revision, cache_dir=cache)


def test_a_good_ref_resolves_inside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache, snapshot = _cache(tmp_path, None)
    assert resolve("org/name", cache_dir=cache) == snapshot


# ---- 10. values read from files ------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [
    ("model_max_length", "512"), ("model_max_length", -1), ("model_max_length", 1.5), ("model_max_length", True),
    ("padding_side", "middle"), ("truncation_side", 0), ("extra_ids", 10**9), ("extra_ids", "100"),
    ("pad_token", 5), ("pad_token", {"text": "<pad>"}), ("additional_special_tokens", "<x>"),
    ("added_tokens_decoder", {"zero": {"content": "x"}}), ("model_input_names", "input_ids"),
    ("clean_up_tokenization_spaces", "yes"), ("tokenizer_class", ["BertTokenizer"]), ("add_prefix_space", 1)])
def test_tokenizer_config_values_are_checked_where_read(copy, key, value):
    edit_json(copy / "tokenizer_config.json", lambda d: d.update({key: value}))
    with pytest.raises(TokenizerError, match=rf"tokenizer_config\.json: {key} must be"):
        AutoTokenizer.from_pretrained(str(copy))


def test_tokenizer_config_model_max_length_overflowing_to_infinity_is_refused(copy):
    (copy / "tokenizer_config.json").write_text('{"model_max_length": 1e400}')
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json.*too large"):
        AutoTokenizer.from_pretrained(str(copy))


def _legacy_gpt2(tmp_path):
    source = asset("gpt2-tokenizer")
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    return tmp_path


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "vocab.json").write_text("[1, 2]"), r"vocab\.json: expected a JSON object"),
    (lambda f: edit_json(f / "vocab.json", lambda d: d.update(x=-1)), r"vocab\.json: token 'x' has id -1"),
    (lambda f: edit_json(f / "vocab.json", lambda d: d.update(x="7")), r"vocab\.json: token 'x' has id '7'"),
    (lambda f: (f / "merges.txt").write_text("#version: 0.2\nĠ t\nonly-one\n"), r"merges\.txt: line 3"),
    (lambda f: (f / "merges.txt").write_bytes(b"\xff\xfe t\n"), r"merges\.txt.*not UTF-8"),
    (lambda f: (f / "merges.txt").write_text("zz qq\n"), r"merges\.txt"),  # tokens not in the vocabulary
], ids=["not_object", "negative_id", "string_id", "bad_merge_line", "not_utf8", "unknown_merge"])
def test_legacy_bpe_files_are_checked(tmp_path, damage, message):
    folder = _legacy_gpt2(tmp_path)
    damage(folder)
    with pytest.raises(TokenizerError, match=message):
        AutoTokenizer.from_pretrained(str(folder))


def test_legacy_vocab_txt_and_spiece_model_are_checked(tmp_path):
    (tmp_path / "vocab.txt").write_bytes(b"[PAD]\n[UNK]\n\xff\n")
    with pytest.raises(TokenizerError, match=r"vocab\.txt.*not UTF-8"):
        AutoTokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "vocab.txt").unlink()
    (tmp_path / "spiece.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(TokenizerError, match=r"malformed SentencePiece model .*spiece\.model"):
        AutoTokenizer.from_pretrained(str(tmp_path))
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    for change, message in ((lambda p: setattr(p.pieces[5], "score", float("nan")), "piece 5 has score nan"),
                            (lambda p: setattr(p.trainer_spec, "unk_id", 10**6), "unk_id 1000000")):
        proto = model_pb2.ModelProto()
        proto.ParseFromString(asset("spm-tokenizer/spiece.model").read_bytes())
        change(proto)
        (tmp_path / "spiece.model").write_bytes(proto.SerializeToString())
        with pytest.raises(TokenizerError, match=message):
            AutoTokenizer.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("name, content, message", [
    ("train.jsonl", '{"text": "a", "label": 1}\n7\n', r"train\.jsonl: line 2 is a int"),
    ("train.csv", b"text,label\n\xff\xfe,1\n", r"train\.csv: not UTF-8"),
    ("train.csv", "text,label\nhello,1,extra\n", r"train\.csv: record 1 has more fields"),
    ("train.json", '[{"text": 5, "label": 1}]', r"train\.json: record 1: 'text' must be a string"),
    ("train.json", '[{"text": "a", "label": [1]}]', r"train\.json: record 1: 'label' must be a label"),
    ("train.json", '{"text": "a"}', r"train\.json: expected a JSON list"),
    ("ner.json", '[{"tokens": "a b", "ner_tags": ["O"]}]', r"ner\.json: record 1: 'tokens' must be a list"),
    ("squad.json", '{"data": [{"paragraphs": [{"context": "short", "qas": [{"id": "q", "question": "?", '
                   '"answers": [{"text": "short", "answer_start": 3}]}]}]}]}', r"'q'.*answer_start 3 .*outside"),
    ("squad.json", '{"data": [{"paragraphs": [{"context": "short", "qas": [{"id": "q", "question": "?", '
                   '"answers": [{"text": "s", "answer_start": "x"}]}]}]}]}', r"'q'.*integer 'answer_start'"),
    ("squad.json", '{"data": 3}', r"squad\.json: not SQuAD-style"),
])
def test_fine_tuning_records_are_checked_where_read(tmp_path, name, content, message):
    from triformers.finetuning.tasks import TASKS

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    task = {"ner.json": "token-classification", "squad.json": "question-answering"}.get(name, "text-classification")
    with pytest.raises(TriformersError, match=message):
        TASKS[task].read(None, str(path))


def test_a_corpus_line_that_is_not_utf8_names_the_file_and_line(tmp_path):
    (tmp_path / "corpus.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "\xff"}\n')
    with pytest.raises(TriformersError, match=r"corpus\.jsonl:2 .*not UTF-8"):
        list(iter_documents([tmp_path / "corpus.jsonl"]))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "corrupt, truncated or not a trainer state"),
    (lambda p: torch.save([1, 2], p), "holds a list, not a trainer state"),
    (lambda p: torch.save({"step": 3}, p), "'tokens' is missing"),
    (lambda p: torch.save({"step": 3, "tokens": 1, "world_size": 1, "global_batch": 2, "model": {},
                           "optimizer": {}, "rng": [{}, {}]}, p), "2 RNG states do not fit"),
    (lambda p: p.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03."),
     "corrupt, truncated or not a trainer state"),
], ids=["truncated", "not_a_dict", "missing_key", "inconsistent", "hostile_pickle"])
def test_a_damaged_trainer_state_is_a_training_error(tmp_path, damage, message):
    path = tmp_path / "trainer_state.pt"
    torch.save({"step": 3, "tokens": 10, "world_size": 1, "global_batch": 2, "model": {"w": torch.ones(64)},
                "optimizer": {}, "rng": [{}]}, path)
    damage(path)
    with pytest.raises(TrainingError, match=rf"trainer_state\.pt.*{message}|{message}.*trainer_state\.pt"):
        read_state(path)


def test_a_metrics_line_cut_short_by_a_kill_is_skipped(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\nnot json\n7\n{"step": 3, "lo')
    truncate_metrics(path, 2)  # what every --resume does first
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert "skipped 3 malformed line(s) (3, 4, 5)" in caplog.text


class _Blocks(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.arange(i, i + 8) % 64


def _collate(examples):
    ids = torch.stack(examples)
    return {"input_ids": ids, "labels": ids}


def test_resuming_with_another_model_size_is_a_training_error(tmp_path):
    def trainer(hidden: int, resume: bool):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **{**GPT2, "n_embd": hidden}))
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, save_steps=1,
                                 disable_tqdm=True, plot_loss=False, resume_from_checkpoint=resume or None)
        return Trainer(model, args, _Blocks(), _collate)

    trainer(16, resume=False).train()
    with pytest.raises(TrainingError,
                       match=r"resume_from_checkpoint: .*checkpoint-0000002 does not fit this run .*--hidden-size"):
        trainer(32, resume=True).train()


def test_classify_json_is_strict_json_when_a_score_is_nan(tmp_path, capsys):
    from triformers.cli import main

    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=20, max_position_embeddings=16, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.classifier.out.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path)
    train_tokenizer(["hello world"] * 5, kind="wordpiece", vocab_size=64).save_pretrained(str(tmp_path))
    assert main(["classify", "--model", str(tmp_path), "--json", "hello world"]) == 0
    printed = capsys.readouterr().out

    def refuse(name):
        raise ValueError(f"{name} in the output")
    results = json.load(io.StringIO(printed), parse_constant=refuse)
    assert results[0][0]["score"] is None
