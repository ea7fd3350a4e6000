"""`Tokenizer`: the transformers-compatible call surface over a `tokenizers.Tokenizer` backend.

All tokenization is done by the `tokenizers` library; this file only maps transformers' arguments
(padding, truncation, max_length, return_tensors, ...) onto the backend, keeps the named special
tokens, and saves folders that transformers' AutoTokenizer loads with the same behaviour
(reference: transformers 5.x `tokenization_utils_tokenizers.py` and `tokenization_utils_base.py`).
A Tokenizer is safe to share between threads: the backend calls that set per-call state, change it or
run without the interpreter lock take the Tokenizer's lock, and backend failures (panics included) are
TokenizerErrors (see `backend.py`).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import torch
from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from ..errors import TokenizerError
from .chat import apply_chat_template, select_template
from .backend import backend_errors, new_lock
from .batch import BatchEncoding
from .encoding import call_options, encode_call
from .padding import pad as pad_inputs
from .converters import GENERIC, SPECIAL_KEYS, VERY_LARGE_INTEGER, Family
from .specials import _content, _special_property, clean_up_tokenization

_SENTINEL = re.compile(r"<extra_id_(\d+)>")


class Tokenizer:
    """A fast tokenizer with transformers' API. Build with `from_pretrained` or `train_tokenizer`."""

    def __init__(
        self,
        backend: Backend,
        family: Family = GENERIC,
        special_tokens: dict[str, Any] | None = None,
        additional_special_tokens: Iterable[Any] = (),
        model_max_length: int = VERY_LARGE_INTEGER,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        model_input_names: Sequence[str] | None = None,
        config: dict | None = None,
        name_or_path: str = "",
        chat_template: str | dict[str, str] | None = None,
        split_special_tokens: bool = False,
    ):
        self.backend = backend
        self._lock = new_lock(self)
        self.family = family
        self.model_max_length = int(model_max_length)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.model_input_names = list(model_input_names or family.model_input_names)
        self.config = dict(config or {})  # other tokenizer_config.json keys, written back on save
        self.name_or_path = name_or_path
        self.chat_template = chat_template  # a Jinja template, or {name: template}; see chat.py
        self.split_special_tokens = bool(split_special_tokens)  # special tokens in texts encoded as plain text
        self.pad_token_type_id = 0
        self._special: dict[str, str | None] = dict.fromkeys(SPECIAL_KEYS)
        self._additional: list[str] = []
        named = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        self._add_special_tokens({**named, "additional_special_tokens": list(additional_special_tokens)})

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name_or_path: str, revision: str | None = None, cache_dir: str | None = None,
        gguf_file: str | None = None, **overrides: Any
    ) -> Tokenizer:
        """Load `tokenizer.json` or legacy vocab files from a folder, the HF cache or the hub; with `gguf_file` (or
        for a path to a `.gguf` file), the tokenizer stored in that GGUF file's metadata.

        `overrides` are tokenizer_config.json keys (`padding_side="left"`, `pad_token="<pad>"`, ...).
        """
        from .loading import load_folder

        return load_folder(name_or_path, revision=revision, cache_dir=cache_dir, overrides=overrides,
                           gguf_file=gguf_file)

    # ---- special tokens -----------------------------------------------------------------------
    def _add_special_tokens(self, tokens: dict[str, Any], replace_additional: bool = True) -> int:
        to_add: list[AddedToken] = []
        for key, value in tokens.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                values = list(value.values()) if isinstance(value, dict) else list(value or [])
                names = [_content(v) for v in values]
                self._additional = (
                    names if replace_additional else self._additional + [n for n in names if n not in self._additional]
                )
                to_add += [self._as_added(v) for v in values]
            elif key in SPECIAL_KEYS:
                self._special[key] = _content(value)
                if value is not None:
                    to_add.append(self._as_added(value))
            else:
                raise TokenizerError(
                    f"unknown special token key {key!r}; expected one of "
                    f"{', '.join(SPECIAL_KEYS)} or additional_special_tokens"
                )
        with self._lock, backend_errors("adding special tokens"):
            known = {t.content for t in self.backend.get_added_tokens_decoder().values()}
            fresh = [t for t in dict((t.content, t) for t in to_add).values() if t.content not in known]
            return self.backend.add_special_tokens(fresh) if fresh else 0

    @staticmethod
    def _as_added(token: Any) -> AddedToken:
        if isinstance(token, AddedToken):
            return token
        if isinstance(token, dict):
            flags = {k: token[k] for k in ("single_word", "lstrip", "rstrip", "normalized") if k in token}
            return AddedToken(str(token["content"]), **{"normalized": False, **flags}, special=True)
        return AddedToken(str(token), special=True, normalized=False)

    def add_special_tokens(
        self, special_tokens_dict: dict[str, Any], replace_additional_special_tokens: bool = True
    ) -> int:
        """Set named special tokens (`{"pad_token": "[PAD]"}`); returns how many new ids were added."""
        return self._add_special_tokens(special_tokens_dict, replace_additional_special_tokens)

    def add_tokens(
        self, new_tokens: str | AddedToken | Sequence[str | AddedToken], special_tokens: bool = False
    ) -> int:
        """Add tokens to the vocabulary (matched before the model runs); returns how many are new."""
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        tokens = [
            t if isinstance(t, AddedToken) else AddedToken(t, normalized=not special_tokens, special=special_tokens)
            for t in new_tokens
        ]
        with self._lock, backend_errors("adding tokens"):
            return self.backend.add_special_tokens(tokens) if special_tokens else self.backend.add_tokens(tokens)

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._additional)

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        named = {k: v for k, v in self._special.items() if v is not None}
        return {**named, **({"additional_special_tokens": list(self._additional)} if self._additional else {})}

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (bos, eos, unk, sep, pad, cls, mask order), then the additional ones."""
        named = [v for v in self._special.values() if v is not None]
        return list(dict.fromkeys(named + self._additional))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def sentinel_ids(self) -> list[int]:
        """ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order (T5 span corruption); [] if none."""
        found = {}
        for token, index in self.backend.get_vocab(with_added_tokens=True).items():
            match = _SENTINEL.fullmatch(token)
            if match:
                found[int(match.group(1))] = index
        return [found[n] for n in range(len(found)) if n in found]

    def extra_id(self, n: int) -> int:
        """id of the sentinel `<extra_id_n>`; TokenizerError if this tokenizer has none such."""
        index = self.backend.token_to_id(f"<extra_id_{n}>")
        if index is None:
            count = len(self.sentinel_ids)
            raise TokenizerError(f"this tokenizer has no sentinel <extra_id_{n}> (it has {count} sentinels)")
        return index

    # ---- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as in transformers)."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            index = self.backend.token_to_id(tokens)
            return index if index is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(int(i)) for i in ids if int(i) not in special]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any
                 ) -> list[str]:
        """The tokens of one text (or pair), special tokens left out unless asked; keywords as for a call."""
        if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
            raise TokenizerError(f"tokenize takes a string (and a pair string), got {type(text).__name__}")
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).encodings[0].tokens

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join tokens into text with the backend's decoder (byte-level, WordPiece "##", "▁" ...), as transformers."""
        decoder = self.backend.decoder
        with self._lock, backend_errors("convert_tokens_to_string"):
            return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, family={self.family.name}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"special_tokens={self.special_tokens_map})"
        )

    # ---- encoding -----------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        text_pair: str | Sequence[str] | None = None,
        text_target: str | Sequence[str] | None = None,
        text_pair_target: str | Sequence[str] | None = None,
        *,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> BatchEncoding:
        """Encode one text, a pair, or a batch (and targets: `labels`), with transformers' arguments and defaults:
        add_special_tokens, padding, truncation, max_length, stride, is_split_into_words, pad_to_multiple_of,
        padding_side, return_tensors, return_token_type_ids, return_attention_mask, return_overflowing_tokens,
        return_special_tokens_mask, return_offsets_mapping, return_length, verbose, split_special_tokens,
        max_target_length (see `encoding.py`); any other keyword is a TokenizerError naming it."""
        return encode_call(self, text, text_pair, text_target, text_pair_target,
                           call_options(options, tokenizer_kwargs))

    def pad(self, encoded_inputs: Any, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None,
            verbose: bool = True) -> BatchEncoding:
        """Pad encoded inputs (a dict of lists, or a list of dicts as a DataLoader hands them), as transformers."""
        return pad_inputs(self, encoded_inputs, padding, max_length, pad_to_multiple_of, padding_side,
                          return_attention_mask, return_tensors, verbose)

    def apply_chat_template(self, conversation: Any, tools: list | None = None, documents: list | None = None,
                            chat_template: str | None = None, add_generation_prompt: bool = False,
                            continue_final_message: bool | str = False, tokenize: bool = True,
                            **kwargs: Any) -> Any:
        """Render a conversation (or a batch of them) with the chat template, and tokenize it unless
        `tokenize=False`; the other keywords are transformers' (see `chat.py`) or the template's own variables."""
        return apply_chat_template(self, conversation, tools=tools, documents=documents, chat_template=chat_template,
                                   add_generation_prompt=add_generation_prompt,
                                   continue_final_message=continue_final_message, tokenize=tokenize, **kwargs)

    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        """The template text `apply_chat_template` would use (a name picks one of several templates)."""
        return select_template(self, chat_template, tools)[0]

    def encode(
        self, text: str, text_pair: str | None = None, add_special_tokens: bool = True, **kwargs: Any
    ) -> list[int]:
        """The ids of one text (or pair); keyword arguments as for a call."""
        ids = self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]
        return ids

    # ---- decoding -----------------------------------------------------------------------------
    def decode(
        self,
        token_ids: int | Sequence[int] | torch.Tensor,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        if isinstance(token_ids, torch.Tensor):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        with self._lock, backend_errors("decode"):
            text = self.backend.decode([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        return self._clean(text, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | torch.Tensor,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        with self._lock, backend_errors("batch_decode"):
            texts = self.backend.decode_batch(
                [[int(i) for i in s] for s in sequences], skip_special_tokens=skip_special_tokens
            )
        return [self._clean(t, clean_up_tokenization_spaces) for t in texts]

    def _clean(self, text: str, clean_up: bool | None) -> str:
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        # transformers skips the clean-up for BPE models: it would delete real spaces before punctuation
        if clean_up and type(self.backend.model).__name__ != "BPE":
            return clean_up_tokenization(text)
        return text

    # ---- pickling: the lock is per process --------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = new_lock(self)

    # ---- saving -------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str) -> list[str]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (each atomically)."""
        from .loading import save_folder

        return save_folder(self, save_directory)


for _key in SPECIAL_KEYS:
    _token_property, _id_property = _special_property(_key)
    setattr(Tokenizer, _key, _token_property)
    setattr(Tokenizer, f"{_key}_id", _id_property)
