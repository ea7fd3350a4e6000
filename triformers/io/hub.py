"""Where a model lives: a name or path -> the local folder that holds it.

A name resolves to a local folder, else to a snapshot in the Hugging Face cache layout
(`models--org--name/snapshots/<commit>/`, honouring HF_HUB_CACHE / HF_HOME and `revision`), else to a
download through `huggingface_hub` (unless HF_HUB_OFFLINE is set or the caller asks for local files only).
With `filename` (a GGUF repository holds several quantizations of one model, each one file), a snapshot counts
only if it holds that file, and a download fetches that file alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ModelNotFoundError
from .files import read_text

# Files worth fetching from the hub: configs, tokenizers and their chat templates, weights (safetensors preferred).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REF_PART = re.compile(r"(?!\.\.?$)[\w.\-]{1,200}")  # one part of a ref name; "." and ".." refused


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def check_revision(revision: str | None) -> str:
    """A revision is a commit hash or a ref name (`main`, `v1.0`, `refs/pr/1`): names of plain parts, so that
    joined under `refs/` it can never leave the cache."""
    revision = "main" if revision is None else revision
    if not isinstance(revision, str) or not all(_REF_PART.fullmatch(part) for part in revision.split("/")):
        raise ModelNotFoundError(f"revision {revision!r} is not a commit hash or a ref name (letters, digits, "
                                 "'.', '_', '-', parts joined by '/'; no '..'); refused")
    return revision


def _cached_snapshot(repo_id: str, revision: str | None, cache_dir: Path) -> Path | None:
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    revision = check_revision(revision)
    if _COMMIT.match(revision):
        commit = revision
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            return None
        commit = read_text(ref, "Hugging Face cache ref", 1024, ModelNotFoundError).strip()
        if not _COMMIT.match(commit):  # the cache writes a commit hash; anything else is not ours to join
            raise ModelNotFoundError(f"{ref} holds {commit[:80]!r}, not a commit hash; refused")
    snapshot = repo / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def resolve(name_or_path: str | os.PathLike, revision: str | None = None,
            cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
            token: str | bool | None = None, filename: str | None = None) -> Path:
    """Return the local folder holding a model (or, with `filename`, that file of it): a path, a cached
    snapshot, or a fresh download (never with `local_files_only`; `token` is the hub's access token for it)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    looked = [f"local folder {path.resolve()}"]
    if path.exists():
        raise ModelNotFoundError(f"{name!r} is a file, not a model folder (expected config.json and weights inside)")
    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    check_revision(revision)
    if re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name) and ".." not in name:
        snapshot = _cached_snapshot(name, revision, cache)
        if snapshot is not None and (filename is None or (snapshot / filename).exists()):
            return snapshot
        repo_folder = cache / ("models--" + name.replace("/", "--"))
        wanted = f", file {filename}" if filename else ""
        looked.append(f"Hugging Face cache {repo_folder} (revision {revision or 'main'}{wanted})")
        if not is_offline() and not local_files_only:
            try:
                from huggingface_hub import snapshot_download

                access = {"token": token} if token is not None else {}
                patterns = HUB_PATTERNS if filename is None else [filename]
                return Path(snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=patterns,
                                              **access))
            except Exception as err:  # network errors, missing repos, gated repos: one clear message
                looked.append(f"the hub ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
        else:
            looked.append("the hub was not asked (" + ("local_files_only" if local_files_only else
                                                       "HF_HUB_OFFLINE is set") + ")")
    raise ModelNotFoundError(f"model {name!r} not found; looked in: " + "; ".join(looked))
