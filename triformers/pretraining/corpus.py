"""Pre-training data: read a corpus, tokenize it once into a memory-mapped token file, split it, pack it.

- `data_files(path)`: a text file, a `.jsonl` file (one JSON object per line, text in `text`), or a
  folder of them (searched recursively, sorted). In text files each non-empty line is a document, as
  in the `text` loader of Hugging Face `datasets` (`document_per="paragraph"` or `"file"` change that).
- `default_corpus()`: with no data, the docstrings of Python's standard library (about 2-3 MB of
  English on every machine), read with `ast` from the source files (no module is imported), cached as
  a `.jsonl` file.
- `tokenize_corpus(files, tokenizer)`: every document tokenized once (no special tokens) into one flat
  `uint16`/`uint32` file plus document offsets, cached beside the data (or in the cache dir when that
  folder is not writable) under a key made of the files' paths, sizes and mtimes and the tokenizer's
  hash; re-used while both are unchanged, so memory stays flat as the corpus grows (numpy memmap).
- `split_documents`: a held-out split by document with a fixed seed.
- `PackedBlocks`: the documents of one split joined with a separator and cut into fixed blocks (the
  "FULL-SENTENCES" packing of RoBERTa, GPT-2's `group_texts`, T5's concatenate-then-split), read
  lazily from the memmap.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..io.files import UNLIMITED, atomic_write, open_regular, parse_json, read_json, read_lines

logger = logging.getLogger("triformers")

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst")
JSONL_SUFFIXES = (".jsonl",)
CACHE_FORMAT = 1  # bump when the token file layout changes
DOCUMENT_UNITS = ("line", "paragraph", "file")
MAX_LINE_CHARS = 256 * 2**20  # one line of a corpus file (a document, with document_per="line")
MAX_FILE_BYTES = 4 * 2**30  # one corpus file read whole (document_per="file")


def cache_root() -> Path:
    """`$TRIFORMERS_CACHE`, else `~/.cache/triformers`."""
    return Path(os.environ.get("TRIFORMERS_CACHE", Path.home() / ".cache" / "triformers"))


# ---- reading ---------------------------------------------------------------------------------------
def data_files(path: str | os.PathLike) -> list[Path]:
    """The corpus files under `path` (a file, or a folder searched recursively), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"--data {path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise InputError(f"--data {path}: the folder holds no {'/'.join(TEXT_SUFFIXES + JSONL_SUFFIXES)} files")
    return files


def iter_documents(files: Sequence[Path], text_field: str = "text", document_per: str = "line",
                   max_docs: int | None = None) -> Iterator[str]:
    """The non-empty documents of `files`, in order (at most `max_docs`)."""
    if document_per not in DOCUMENT_UNITS:
        raise InputError(f"document_per must be one of {DOCUMENT_UNITS}, got {document_per!r}")
    count = 0
    for path in files:
        for doc in _documents_of(Path(path), text_field, document_per):
            if max_docs is not None and count >= max_docs:
                return
            count += 1
            yield doc


def _text_lines(handle: io.TextIOBase, where: str) -> Iterator[str]:
    """The lines of a text file (universal newlines), each at most MAX_LINE_CHARS, so that a file without
    newlines (a sparse terabyte) is never read into memory whole."""
    for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE_CHARS + 1), ""), 1):
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"{where}: line {number} is longer than {MAX_LINE_CHARS} characters; refused")
        yield line


def _documents_of(path: Path, text_field: str, document_per: str) -> Iterator[str]:
    """Documents of one file, read through the guarded reader: a regular file, a line at a time (at most
    MAX_LINE_CHARS; with document_per="file" the file is at most MAX_FILE_BYTES); JSON lines strict and
    with a nesting cap, each error naming the file and line; in text files undecodable bytes replaced."""
    whole = document_per == "file" and path.suffix not in JSONL_SUFFIXES
    with open_regular(path, "corpus file", MAX_FILE_BYTES if whole else UNLIMITED, InputError) as (raw, _):
        if path.suffix in JSONL_SUFFIXES:
            for number, line in read_lines(raw, f"corpus file {path}", MAX_LINE_CHARS, InputError):
                if not line.strip():
                    continue
                record = parse_json(line, f"{path}:{number} (a JSON line)", InputError)
                if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                    raise InputError(f"{path}:{number}: expected an object with a string {text_field!r} field")
                if record[text_field].strip():
                    yield record[text_field]
            return
        handle = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        if whole:
            text = handle.read()
            if text.strip():
                yield text
        elif document_per == "line":
            yield from (line.rstrip("\n") for line in _text_lines(handle, f"corpus file {path}") if line.strip())
        else:
            paragraph: list[str] = []
            for line in _text_lines(handle, f"corpus file {path}"):
                if line.strip():
                    paragraph.append(line.rstrip("\n"))
                elif paragraph:
                    yield "\n".join(paragraph)
                    paragraph = []
            if paragraph:
                yield "\n".join(paragraph)


# ---- the default corpus ------------------------------------------------------------------------------
def stdlib_docstrings(min_chars: int = 40, max_docs: int | None = None) -> Iterator[str]:
    """Docstrings (module, class, function) of the standard library's `.py` files, parsed with `ast`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(dirpath, name).read_bytes())
            except (SyntaxError, ValueError, OSError):
                continue  # the stdlib ships deliberately broken files (bad syntax/encoding tests)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= min_chars:
                        yield doc
                        count += 1
                        if max_docs is not None and count >= max_docs:
                            return


def default_corpus(cache_dir: str | os.PathLike | None = None, max_docs: int | None = None) -> Path:
    """Path of the cached stdlib-docstring corpus (`.jsonl`), built on first use."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    version = sysconfig.get_python_version()
    path = folder / f"stdlib-docstrings-py{version}{'' if max_docs is None else f'-{max_docs}'}.jsonl"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"text": doc}) + "\n" for doc in stdlib_docstrings(max_docs=max_docs))
    atomic_write(path, lambda tmp: _write_lines(tmp, lines))
    logger.info("built the default corpus %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _write_lines(path: str, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)


# ---- the token cache ---------------------------------------------------------------------------------
def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's whole pipeline (vocabulary, normalizer, pre-tokenizer, specials)."""
    backend = getattr(tokenizer, "backend", None) or getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"cannot fingerprint {type(tokenizer).__name__}: it has no `tokenizers` backend")
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def _encoder(tokenizer: Any) -> Callable[[list[str]], list[list[int]]]:
    backend = getattr(tokenizer, "backend", None) or getattr(tokenizer, "backend_tokenizer", None)
    # the backend directly: no special tokens, and no "longer than model_max_length" warnings per document
    return lambda texts: [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


@dataclass
class TokenCorpus:
    """All documents as one flat token array (memory-mapped) and `offsets` (n_docs + 1,) into it."""

    tokens: np.ndarray  # (n_tokens,) uint16 or uint32, a read-only np.memmap
    offsets: np.ndarray  # (n_docs + 1,) int64: document i is tokens[offsets[i]:offsets[i + 1]]
    path: Path

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def document(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    @classmethod
    def load(cls, path: Path) -> TokenCorpus:
        meta = read_json(path.with_suffix(".json"), "token cache", InputError)
        offsets = np.load(path.with_suffix(".offsets.npy"))
        tokens = np.memmap(path, dtype=meta["dtype"], mode="r", shape=(int(offsets[-1]),)) if offsets[-1] else \
            np.zeros(0, dtype=meta["dtype"])
        return cls(tokens, offsets, path)


def corpus_key(files: Sequence[Path], tokenizer: Any, text_field: str, document_per: str,
               max_docs: int | None) -> str:
    """`<tokenizer hash>.<data hash>`: the tokenizer, and each file's path, size and mtime plus the reading options."""
    stats = [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    blob = json.dumps([CACHE_FORMAT, stats, text_field, document_per, max_docs])
    return f"{tokenizer_fingerprint(tokenizer)[:12]}.{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _cache_folder(files: Sequence[Path], cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    beside = Path(files[0]).resolve().parent / ".triformers-cache"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass  # read-only data folder: fall through to the user cache
    return cache_root() / "tokens"


def tokenize_corpus(files: Sequence[Path], tokenizer: Any, cache_dir: str | os.PathLike | None = None,
                    text_field: str = "text", document_per: str = "line", max_docs: int | None = None,
                    batch_docs: int = 2000) -> TokenCorpus:
    """Tokenize `files` once into a memory-mapped token file; re-use it while nothing changed."""
    files = [Path(f) for f in files]
    key = corpus_key(files, tokenizer, text_field, document_per, max_docs)
    folder = _cache_folder(files, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = (files[0].stem if len(files) == 1 else files[0].parent.name) or "corpus"
    path = folder / f"{stem}.{key}.tokens"
    if path.with_suffix(".json").is_file():
        logger.info("re-using the token cache %s", path)
        return TokenCorpus.load(path)
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    encode = _encoder(tokenizer)
    offsets = [0]

    def write_tokens(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            batch: list[str] = []
            for doc in iter_documents(files, text_field, document_per, max_docs):
                batch.append(doc)
                if len(batch) == batch_docs:
                    _write_batch(handle, encode(batch), dtype, offsets)
                    batch = []
            if batch:
                _write_batch(handle, encode(batch), dtype, offsets)

    def write_offsets(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(offsets, dtype=np.int64))

    atomic_write(path, write_tokens)
    atomic_write(path.with_suffix(".offsets.npy"), write_offsets)
    meta = {"format": CACHE_FORMAT, "dtype": np.dtype(dtype).name, "documents": len(offsets) - 1,
            "tokens": offsets[-1], "files": [str(f) for f in files]}
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1))  # written last: marks a complete cache
    tokenizer_part = key.split(".")[0]
    for stale in folder.glob(f"{stem}.{tokenizer_part}.*"):
        if not stale.name.startswith(f"{stem}.{key}."):
            stale.unlink()  # this tokenizer's cache of an older version of the data (other tokenizers' stay)
    logger.info("tokenized %d documents (%d tokens) into %s", len(offsets) - 1, offsets[-1], path)
    return TokenCorpus.load(path)


def _write_batch(handle, encoded: list[list[int]], dtype: np.dtype, offsets: list[int]) -> None:
    for ids in encoded:
        if ids:
            np.asarray(ids, dtype=dtype).tofile(handle)
            offsets.append(offsets[-1] + len(ids))


# ---- splitting and packing ---------------------------------------------------------------------------
def split_documents(num_docs: int, eval_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) document indices, each sorted; at least one document each when eval_fraction > 0."""
    if not 0 <= eval_fraction < 1:
        raise InputError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if eval_fraction == 0:
        return np.arange(num_docs), np.zeros(0, dtype=np.int64)
    if num_docs < 2:
        raise InputError(f"a held-out split needs at least 2 documents, the corpus has {num_docs}")
    num_eval = min(max(1, round(num_docs * eval_fraction)), num_docs - 1)
    order = np.random.default_rng(seed).permutation(num_docs)
    return np.sort(order[num_eval:]), np.sort(order[:num_eval])


class PackedBlocks:
    """Documents of one split joined (each followed by `separator`) and cut into `block_length` tokens.

    Item i is `prefix + stream[i * block_length : (i + 1) * block_length] + suffix` as int64; the tail
    shorter than a block is dropped. Only the (n_docs,) lengths live in memory; tokens stay memmapped.
    """

    def __init__(self, corpus: TokenCorpus, doc_ids: np.ndarray, block_length: int, separator: int | None = None,
                 prefix: Sequence[int] = (), suffix: Sequence[int] = ()):
        if block_length < 1:
            raise InputError(f"block_length must be positive, got {block_length}")
        self.corpus, self.doc_ids, self.block_length = corpus, np.asarray(doc_ids, dtype=np.int64), block_length
        self.separator = separator
        self.prefix, self.suffix = np.asarray(prefix, dtype=np.int64), np.asarray(suffix, dtype=np.int64)
        lengths = corpus.offsets[self.doc_ids + 1] - corpus.offsets[self.doc_ids] + (separator is not None)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])  # (n_docs + 1,) in the joined stream
        self.num_tokens = int(self.starts[-1])

    def __len__(self) -> int:
        return self.num_tokens // self.block_length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} out of range ({len(self)} blocks)")
        begin, end = index * self.block_length, (index + 1) * self.block_length
        doc = int(np.searchsorted(self.starts, begin, side="right")) - 1
        pieces = [self.prefix]
        while begin < end:
            offset = begin - self.starts[doc]
            tokens = self.corpus.document(int(self.doc_ids[doc]))
            if self.separator is not None:
                tokens = np.append(tokens.astype(np.int64), self.separator)
            piece = tokens[offset:offset + end - begin].astype(np.int64)
            pieces.append(piece)
            begin += len(piece)
            doc += 1
        pieces.append(self.suffix)
        return np.concatenate(pieces)
