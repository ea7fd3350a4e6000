"""Command-line flags generated from an option dataclass (`PretrainOptions`, `FinetuneOptions`), and parsed back.

Every field becomes `--field-name` (also accepted as `--field_name`, transformers' HfArgumentParser spelling)
with its help from `metadata["help"]` (see `triformers.training.fields.option`) and its type from the
annotation:
- int / float / str: one value; `X | None` also takes the word `none`; a union parses as its first member.
- bool: `--name` sets True, `--no-name` False.
- `Literal[...]`: its values are the choices.
- `list[X]`, `tuple[X, ...]`: one or more values; `tuple[X, X]`: exactly two; tuples come back as tuples.
- a nested option dataclass (`PretrainOptions.training`): its own fields, flat, in a flag group titled by the
  field's help, with the defaults of the parent's default instance (the command's defaults).
Metadata keys besides `help`: `flags` (more option strings: `--lr`, `--out`; on a bool field they set True),
`no_flags` (bool fields: option strings that set False, `--no-plot`), `choices` (a sequence, or a callable
that returns one when the parser is built), and `nargs` / `const`, handed to argparse as HfArgumentParser does
(`--resume` alone means True). Two fields with the same flag are an error when the parser is built.
A flag not given stays out of the namespace (argparse.SUPPRESS), so `parse_flags` builds the dataclass from its
own defaults: `triformers pretrain` with no flags is exactly `PretrainOptions()`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..training.fields import Kind, field_kinds

METAVARS = {int: "N", float: "X", str: "TEXT"}


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _converter(kind: Kind, name: str):
    base = kind.item if kind.base in (list, tuple) else kind.base

    def convert(text: str) -> Any:
        if kind.optional and text.lower() == "none":
            return None
        return base(text)

    convert.__name__ = getattr(base, "__name__", name)  # argparse names the type in "invalid int value"
    return convert


def _help(field: dataclasses.Field, default: Any) -> str:
    text = field.metadata.get("help", "")
    if default is not dataclasses.MISSING and default is not None:
        text += f" (default: {default!r})" if default == "" else f" (default: {default})"
    return text.replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str, defaults: Any = None, prefix: str = "") -> None:
    """Add one flag per field of `cls` (nested dataclasses as their own groups) to `parser`."""
    group = parser.add_argument_group(title)
    kinds = field_kinds(cls)
    for field in dataclasses.fields(cls):
        kind, dest = kinds[field.name], prefix + field.name
        default = getattr(defaults, field.name) if defaults is not None else _default_of(field)
        if dataclasses.is_dataclass(kind.base):
            add_flags(parser, kind.base, field.metadata.get("help") or field.name, default, prefix=dest + ".")
            continue
        name = "--" + field.name.replace("_", "-")
        hidden = ["--" + field.name] if "_" in field.name else []
        if kind.base is bool:
            _add_bool(group, field, default, name, hidden, dest)
            continue
        settings: dict[str, Any] = dict(dest=dest, type=_converter(kind, field.name), default=argparse.SUPPRESS,
                                        metavar=METAVARS.get(kind.item if kind.base in (list, tuple) else kind.base))
        choices = field.metadata.get("choices", kind.choices)
        if choices is not None:
            settings.update(choices=list(choices() if callable(choices) else choices), metavar=None)
        if kind.base in (list, tuple):
            settings["nargs"] = kind.length or "+"
        settings.update({key: field.metadata[key] for key in ("nargs", "const") if key in field.metadata})
        if default is dataclasses.MISSING:
            settings["required"] = True
        group.add_argument(name, *field.metadata.get("flags", ()), help=_help(field, default), **settings)
        for spelling in hidden:
            group.add_argument(spelling, help=argparse.SUPPRESS, **{**settings, "required": False})


def _add_bool(group, field: dataclasses.Field, default: Any, name: str, hidden: list[str], dest: str) -> None:
    """`--name` (and `flags`) set True; `--no-name` (and `no_flags`) set False, offered when the default is True."""
    common = dict(dest=dest, action="store_const", default=argparse.SUPPRESS)
    group.add_argument(name, *field.metadata.get("flags", ()), const=True, help=_help(field, None), **common)
    negations = (["--no-" + name[2:]] if default is not False else []) + list(field.metadata.get("no_flags", ()))
    if negations:
        group.add_argument(*negations, const=False, help=f"turn {name} off (it is on by default)"
                           if default is True else f"turn {name} off", **common)
    for spelling in hidden:
        group.add_argument(spelling, const=True, help=argparse.SUPPRESS, **common)


def parse_flags(cls: type, namespace: argparse.Namespace, defaults: Any = None, prefix: str = "") -> Any:
    """The `cls` instance the flags in `namespace` describe; fields whose flags were not given keep their default."""
    given = _given(cls, namespace, defaults, prefix)
    return dataclasses.replace(defaults, **given) if defaults is not None else cls(**given)


def _given(cls: type, namespace: argparse.Namespace, defaults: Any, prefix: str) -> dict[str, Any]:
    values, kinds = {}, field_kinds(cls)
    for field in dataclasses.fields(cls):
        kind, dest = kinds[field.name], prefix + field.name
        if dataclasses.is_dataclass(kind.base):
            base = getattr(defaults, field.name) if defaults is not None else _default_of(field)
            nested = _given(kind.base, namespace, base, dest + ".")
            if nested:
                values[field.name] = dataclasses.replace(base, **nested)
        elif hasattr(namespace, dest):
            value = getattr(namespace, dest)
            values[field.name] = tuple(value) if kind.base is tuple and isinstance(value, list) else value
    return values
