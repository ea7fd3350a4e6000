"""Train a new tokenizer with one family's special tokens and pipeline (via `tokenizers` trainers).

- "wordpiece": BERT — BertNormalizer + BertPreTokenizer, `[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`,
  `[CLS] A [SEP] B [SEP]` with token types.
- "bpe": GPT-2 — byte-level BPE over the 256-byte alphabet, `<|endoftext|>` = bos = eos = unk.
- "unigram": T5 — SentencePiece-style Unigram with WhitespaceSplit + Metaspace, `<pad>=0 </s>=1 <unk>=2`,
  `</s>` appended, and 100 `<extra_id_N>` sentinels after the learned pieces (`<extra_id_0>` last).
The pipelines are the ones transformers' BertTokenizer, GPT2Tokenizer and T5Tokenizer rebuild from a
saved folder, so a saved tokenizer loads in transformers with identical ids.

Training is reproducible across processes: the same texts give the same vocabulary and ids. The
`tokenizers` trainers alone are not (their word counts live in hash maps seeded per process): WordPiece
numbers its `##` pieces in hash order and breaks ties between equally frequent merges by those ids, so
even the learned pieces change from run to run; Unigram's scores differ in the last bits, and so does
the order of tied pieces and of the rare characters it keeps at the bottom. WordPiece is therefore
trained twice — once with no merges, to collect the `##` pieces, then with them numbered in sorted
order ahead of the merges — and Unigram's pieces are ordered by score rounded to 1e-9, then by text.
Byte-level BPE starts from a fixed, full alphabet and needs neither.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, Unigram, WordPiece

from ..errors import TokenizerError
from . import converters as cv
from .loading import set_post_processor
from .tokenizer import Tokenizer

KINDS = ("wordpiece", "bpe", "unigram")


def _texts(texts_or_files: Iterable[str] | str | os.PathLike) -> tuple[list[str], Iterator[str] | None]:
    """Split the input into file paths (trained from disk) or an iterator of texts."""
    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]
    items = iter(texts_or_files)
    first = next(items, None)
    if first is None:
        raise TokenizerError("train_tokenizer got no texts")
    if isinstance(first, os.PathLike) or (
        isinstance(first, str) and "\n" not in first and len(first) < 4096 and Path(first).is_file()
    ):
        files = [str(first)] + [str(f) for f in items]
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise TokenizerError(f"train_tokenizer: training files not found: {missing[:5]}")
        return files, None

    def chain() -> Iterator[str]:
        yield first
        for text in items:
            if not isinstance(text, str):
                raise TokenizerError(f"train_tokenizer expects strings or file paths, got {type(text).__name__}")
            yield text

    return [], chain()


def train_tokenizer(
    texts_or_files: Iterable[str] | str | os.PathLike,
    kind: str = "wordpiece",
    vocab_size: int = 8000,
    lowercase: bool | None = None,
    min_frequency: int = 2,
    model_max_length: int = 512,
    show_progress: bool = False,
) -> Tokenizer:
    """Train a BERT-style ("wordpiece"), GPT-2-style ("bpe") or T5-style ("unigram") tokenizer.

    `texts_or_files` is an iterable of texts or of file paths (one text per line). `vocab_size` counts
    the learned pieces and the special tokens; T5's 100 sentinels come on top, as in T5's 32000 + 100.
    `lowercase` defaults to True for wordpiece (like bert-base-uncased) and False otherwise.
    """
    if kind not in KINDS:
        raise TokenizerError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 0:
        raise TokenizerError(f"vocab_size must be a positive int, got {vocab_size!r}")
    files, iterator = _texts(texts_or_files)
    lowercase = (kind == "wordpiece") if lowercase is None else bool(lowercase)
    if kind == "wordpiece":
        family, specials = cv.BERT, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        backend = Backend(WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            show_progress=show_progress,
            continuing_subword_prefix="##",
        )
    elif kind == "bpe":
        family, specials = cv.GPT2, ["<|endoftext|>"]
        backend = Backend(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
            family = cv.Family("gpt2", "PreTrainedTokenizerFast", cv.GPT2.specials)  # GPT2Tokenizer has no normalizer
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
    else:
        family, specials = cv.T5, ["<pad>", "</s>", "<unk>"]
        backend = Backend(Unigram())
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
            family = cv.Family("t5", "PreTrainedTokenizerFast", cv.T5.specials)  # T5Tokenizer rebuilds without it
        cv.set_t5_pipeline(backend)
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=show_progress
        )
    if kind == "wordpiece":
        with tempfile.TemporaryDirectory(prefix="triformers-wordpiece-") as spool:
            if iterator is not None:  # read twice: spooled to disk (words never span a line break)
                files, iterator = [_spool(iterator, Path(spool) / "texts.txt")], None
            continuing = sorted(t for t in _run(backend, trainer, files, None, vocab_size=1).get_vocab()
                                if t.startswith("##"))
            trainer.special_tokens = specials + continuing
            trained = _run(backend, trainer, files, None, vocab_size)
        backend = _wordpiece_in_standard_order(trained, specials, continuing)
    else:
        backend = _run(backend, trainer, files, iterator, vocab_size)

    additional: list[str] = []
    if kind == "unigram":
        backend = _unigram_in_fixed_order(backend, len(specials))
        backend = _with_sentinels(backend, cv.T5_EXTRA_IDS)
        additional = [f"<extra_id_{i}>" for i in range(cv.T5_EXTRA_IDS)]
    named = dict(family.specials)
    tokenizer = Tokenizer(
        backend, family, special_tokens=named, additional_special_tokens=additional, model_max_length=model_max_length
    )
    set_post_processor(tokenizer, family.name, {})
    return tokenizer


def _spool(texts: Iterator[str], path: Path) -> str:
    with open(path, "w", encoding="utf-8") as out:
        for text in texts:
            out.write(text)
            out.write("\n")
    return str(path)


def _run(backend: Backend, trainer, files: list[str], texts: list[str] | Iterator[str] | None,
         vocab_size: int) -> Backend:
    """Train a copy of `backend` (normalizer and pre-tokenizer kept) with `trainer` at `vocab_size`."""
    copy = Backend.from_str(backend.to_str())
    trainer.vocab_size = vocab_size
    try:
        if files:
            copy.train(files, trainer)
        else:
            copy.train_from_iterator(texts, trainer)
    except TokenizerError:
        raise
    except Exception as err:
        raise TokenizerError(f"training a tokenizer failed: {err}") from None
    return copy


def _wordpiece_in_standard_order(trained: Backend, specials: list[str], continuing: list[str]) -> Backend:
    """The WordPiece vocabulary of a run seeded with the sorted `##` pieces, renumbered the way a plain run
    numbers it — special tokens, single characters, `##` pieces, then merges in the order learned — with
    only the real special tokens registered as such."""
    by_id = sorted(trained.get_vocab().items(), key=lambda item: item[1])
    learned = [token for token, _ in by_id[len(specials) + len(continuing):]]
    alphabet = [token for token in learned if len(token) == 1]
    merges = [token for token in learned if len(token) > 1]
    vocab = {token: i for i, token in enumerate(specials + alphabet + continuing + merges)}
    rebuilt = Backend(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        setattr(rebuilt, part, getattr(trained, part))
    rebuilt.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return rebuilt


def _unigram_in_fixed_order(trained: Backend, n_specials: int) -> Backend:
    """Unigram pieces after the special tokens ordered by score rounded to 1e-9 (descending), then text.

    The trainer appends the characters it must keep but never scored at the bottom, 1e-4 apart in hash
    order; that tail (single characters within 1e-4 per place of the lowest score) is given its scores
    in character order."""
    state = json.loads(trained.to_str())
    pieces = state["model"]["vocab"]
    learned = sorted(([p, round(score, 9)] for p, score in pieces[n_specials:]), key=lambda ps: (-ps[1], ps[0]))
    tail = 0
    while (tail < len(learned) and len(learned[-1 - tail][0]) == 1
           and learned[-1 - tail][1] <= learned[-1][1] + 1e-4 * tail + 1e-9):
        tail += 1
    if tail > 1:
        chars, scores = sorted(p for p, _ in learned[-tail:]), [score for _, score in learned[-tail:]]
        learned[-tail:] = [[c, score] for c, score in zip(chars, scores, strict=True)]
    state["model"]["vocab"] = pieces[:n_specials] + learned
    return Backend.from_str(json.dumps(state))


def _with_sentinels(backend: Backend, extra_ids: int) -> Backend:
    """Append `<extra_id_{n-1}> ... <extra_id_0>` to the Unigram vocabulary itself (as T5's converter does)."""
    state = json.loads(backend.to_str())
    vocab = [tuple(piece) for piece in state["model"]["vocab"]]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
    rebuilt = Backend(Unigram(vocab, unk_id=state["model"]["unk_id"], byte_fallback=False))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        setattr(rebuilt, part, getattr(backend, part))
    rebuilt.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<pad>", "</s>", "<unk>")])
    return rebuilt
