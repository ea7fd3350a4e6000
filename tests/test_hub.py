"""Name resolution: a local folder, else a snapshot in the Hugging Face cache layout (HF_HUB_CACHE /
HF_HOME, `revision` as a commit hash or a named ref), else a download; offline, a missing model gets
one error naming the id and every place looked in, and the network is never tried."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch

from triformers import AutoConfig, AutoModel, ModelNotFoundError
from triformers.io import hub

REPO = "tiny-org/tiny-bert"
MAIN = "a" * 40  # commit that refs/main points to
V2 = "0123456789abcdef0123456789abcdef01234567"  # commit of the named ref "v2"
IDS = torch.tensor([[2, 17, 45, 96, 3]])


def save_model(folder, layers: int) -> torch.Tensor:
    """A tiny random BERT saved in `folder`; returns its hidden states on IDS."""
    torch.manual_seed(layers)
    config = AutoConfig.for_model("bert", vocab_size=97, hidden_size=24, num_hidden_layers=layers,
                                  num_attention_heads=3, intermediate_size=40, max_position_embeddings=16)
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model(input_ids=IDS).last_hidden_state


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A Hugging Face cache holding REPO at two commits: refs/main -> MAIN (1 layer), refs/v2 -> V2 (2)."""
    root = tmp_path_factory.mktemp("hf") / "hub"
    repo = root / ("models--" + REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(MAIN)  # the hub writes no trailing newline
    (repo / "refs" / "v2").write_text(V2 + "\n")
    outputs = {MAIN: save_model(repo / "snapshots" / MAIN, 1), V2: save_model(repo / "snapshots" / V2, 2)}
    return root, outputs


@pytest.fixture
def offline(monkeypatch, cache):
    """HF_HUB_OFFLINE=1, HF_HUB_CACHE -> the test cache, and a hub client that fails the test if called."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache[0]))

    def no_network(*args, **kwargs):
        raise AssertionError(f"offline, yet the hub was asked for {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    return cache


def hidden(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).last_hidden_state


def test_hub_id_loads_from_the_cache_offline(offline):
    _, outputs = offline
    model = AutoModel.from_pretrained(REPO)
    assert model.config.num_layers == 1
    torch.testing.assert_close(hidden(model), outputs[MAIN], atol=0, rtol=0)
    assert AutoConfig.from_pretrained(REPO).num_layers == 1


@pytest.mark.parametrize("revision", [V2, "v2"], ids=["commit-hash", "named-ref"])
def test_revision_picks_the_snapshot(offline, revision):
    _, outputs = offline
    model = AutoModel.from_pretrained(REPO, revision=revision)
    assert model.config.num_layers == 2
    torch.testing.assert_close(hidden(model), outputs[V2], atol=0, rtol=0)


def test_hf_home_is_honoured_without_hf_hub_cache(offline, monkeypatch):
    root, _ = offline
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(root.parent))  # the cache is $HF_HOME/hub
    assert hub.resolve(REPO) == root / "models--tiny-org--tiny-bert" / "snapshots" / MAIN


def test_a_local_folder_wins_over_the_cache(offline, tmp_path, monkeypatch):
    local = tmp_path / REPO
    expected = save_model(local, 3)
    monkeypatch.chdir(tmp_path)  # "tiny-org/tiny-bert" is now also a relative path
    torch.testing.assert_close(hidden(AutoModel.from_pretrained(REPO)), expected, atol=0, rtol=0)


def test_missing_model_offline_names_the_id_and_the_places_looked_in(offline):
    root, _ = offline
    with pytest.raises(ModelNotFoundError) as err:
        AutoModel.from_pretrained("tiny-org/no-such-model")
    message = str(err.value)
    assert "'tiny-org/no-such-model'" in message
    assert "local folder" in message and str(root / "models--tiny-org--no-such-model") in message
    assert "HF_HUB_OFFLINE" in message
    assert isinstance(err.value, OSError)


@pytest.mark.parametrize("revision", ["v3", "f" * 40])
def test_missing_revision_offline(offline, revision):
    with pytest.raises(ModelNotFoundError, match=rf"'{REPO}' not found.*\(revision {revision}\)"):
        AutoModel.from_pretrained(REPO, revision=revision)


def test_a_file_is_not_a_model_folder(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"is a file, not a model folder"):
        AutoModel.from_pretrained(path)


def test_online_miss_downloads_with_the_revision(monkeypatch, cache, tmp_path):
    """Not offline and not cached: the download goes through huggingface_hub (stubbed here)."""
    root, outputs = cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    calls = []

    def fake_download(repo_id, revision=None, cache_dir=None, allow_patterns=None):
        calls.append((repo_id, revision, str(cache_dir)))
        return str(root / "models--tiny-org--tiny-bert" / "snapshots" / V2)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = AutoModel.from_pretrained(REPO, revision="v2")
    assert calls == [(REPO, "v2", str(tmp_path / "empty"))]
    torch.testing.assert_close(hidden(model), outputs[V2], atol=0, rtol=0)


def test_online_download_failure_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(ModelNotFoundError, match=r"the hub \(ConnectionError: Name or service not known\)"):
        AutoModel.from_pretrained("tiny-org/unreachable")


@pytest.mark.parametrize("name", ["../outside", "a/b/c", "tiny-org/tiny bert"])
def test_names_that_are_not_hub_ids_are_not_looked_up(offline, name):
    with pytest.raises(ModelNotFoundError) as err:
        AutoModel.from_pretrained(name)
    assert "local folder" in str(err.value) and "Hugging Face cache" not in str(err.value)


def test_sharded_snapshot_of_symlinks_into_blobs(tmp_path, monkeypatch):
    """The real cache layout: snapshot files are symlinks to content-addressed files in blobs/, which
    lie outside the snapshot folder; the shard-index safety check must still accept them."""
    import transformers

    torch.manual_seed(4)
    theirs = transformers.BertModel(transformers.BertConfig(
        vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
        max_position_embeddings=16)).eval()
    theirs.save_pretrained(tmp_path / "plain", max_shard_size="30KB")
    repo = tmp_path / "hub" / "models--tiny-org--sharded"
    snapshot, blobs = repo / "snapshots" / MAIN, repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, path in enumerate(sorted((tmp_path / "plain").iterdir())):
        (blobs / f"blob{i}").write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(f"../../blobs/blob{i}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    assert len(list(snapshot.glob("model-*.safetensors"))) >= 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with torch.no_grad():
        # fp32 parity with transformers: atol 1e-5 (see tests/test_encoder.py for why)
        torch.testing.assert_close(hidden(AutoModel.from_pretrained("tiny-org/sharded")),
                                   theirs(input_ids=IDS).last_hidden_state, atol=1e-5, rtol=0)
