"""Special-token helpers shared by `Tokenizer`: token forms, the named-token properties, clean-up.

The seven named special tokens (bos, eos, unk, sep, pad, cls, mask) each get a `<name>_token` and a
`<name>_token_id` property, settable as in transformers (`tok.pad_token = tok.eos_token`).
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken

from ..errors import TokenizerError


def _content(token: Any) -> str | None:
    """A special token given as a string, an AddedToken or a {"content": ...} dict."""
    if token is None:
        return None
    if isinstance(token, dict):
        return str(token["content"])
    if isinstance(token, AddedToken):
        return token.content
    return str(token)


def clean_up_tokenization(text: str) -> str:
    """transformers' `clean_up_tokenization`: drop the space before punctuation and contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def _special_property(key: str) -> tuple[property, property]:
    def get_token(self) -> str | None:
        return self._special[key]

    def set_token(self, value: Any) -> None:
        if value is None:
            self._special[key] = None
        else:
            self._add_special_tokens({key: value})

    def get_id(self) -> int | None:
        token = self._special[key]
        return None if token is None else self.backend.token_to_id(token)

    def set_id(self, value: int | None) -> None:
        token = None if value is None else self.backend.id_to_token(int(value))
        if value is not None and token is None:
            raise TokenizerError(f"cannot set {key}_id to {value}: no such id in a vocabulary of {len(self)}")
        set_token(self, token)

    return property(get_token, set_token, doc=f"The {key.replace('_', ' ')} (None if unset)."), property(
        get_id, set_id, doc=f"id of the {key.replace('_', ' ')} (None if unset)."
    )
