"""Tokenizers with transformers' API, backed by the `tokenizers` library.

`AutoTokenizer.from_pretrained(path)` loads `tokenizer.json` or legacy vocab files (BERT's vocab.txt,
GPT-2/RoBERTa/BART's vocab.json + merges.txt, T5's spiece.model); `train_tokenizer` trains a new
WordPiece, byte-level BPE or Unigram tokenizer with a family's special tokens. Both give a `Tokenizer`
whose calls, ids and saved folders match transformers' AutoTokenizer: `tokenizer(...)` (encoding.py),
`pad` (padding.py), `apply_chat_template` (chat.py, chat_schema.py, chat_files.py).
"""

import os

from ..io.pretrained import Checkpoint
from .batch import BatchEncoding
from .tokenizer import Tokenizer
from .training import train_tokenizer


class AutoTokenizer:
    """transformers-style entry point: `AutoTokenizer.from_pretrained(name_or_path, **overrides)`."""

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(
        name_or_path: str | os.PathLike | Checkpoint, revision: str | None = None, cache_dir: str | None = None,
        gguf_file: str | os.PathLike | None = None, **overrides
    ) -> Tokenizer:
        """A name, a path or a located `Checkpoint` (whose folder and model_type are then used as they are);
        `gguf_file` (or a path to a `.gguf` file): the tokenizer in a GGUF file's metadata."""
        return Tokenizer.from_pretrained(name_or_path, revision=revision, cache_dir=cache_dir, gguf_file=gguf_file,
                                         **overrides)


__all__ = ["AutoTokenizer", "BatchEncoding", "Tokenizer", "train_tokenizer"]
