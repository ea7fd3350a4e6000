"""Option dataclass fields: one call declares a field's default and help text; its type is read back from the
annotation, both to check values (an error names the field) and to generate command-line flags (`cli/flags.py`).

    learning_rate: float = option(5e-5, "peak AdamW learning rate", flags=("--lr",))

The help lives in `metadata["help"]`, as in transformers' TrainingArguments; the other metadata keys are
read by the flag generator (see `triformers.cli.flags`), except `minimum`, the least value a number may take
(checked by `check_fields`, as the type is). Types understood: int, float, str, bool, `X | None`,
`Literal[...]` (the choices), `list[X]`, `tuple[X, ...]` / `tuple[X, X]`, unions (a value may be any member) and
nested option dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Literal

from ..errors import ConfigError


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **metadata: Any) -> Any:
    """A dataclass field with its default (or `factory`) and help text, plus any command-line settings."""
    meta = {"help": help, **metadata}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Kind:
    """What a field's annotation allows: `members` are the non-None types of a union, in order."""

    members: tuple[Any, ...]
    optional: bool = False
    choices: tuple[Any, ...] | None = None  # Literal values

    @property
    def base(self) -> Any:
        """The type a command-line value parses as: the first member's (a Literal's values' type)."""
        first = self.members[0]
        return type(self.choices[0]) if self.choices else typing.get_origin(first) or first

    @property
    def item(self) -> Any:
        """Element type of a list or tuple member."""
        args = typing.get_args(self.members[0])
        return args[0] if args else str

    @property
    def length(self) -> int | None:
        """Fixed length of a `tuple[X, X]` member (None for lists and `tuple[X, ...]`)."""
        args = typing.get_args(self.members[0])
        return None if self.base is not tuple or Ellipsis in args else len(args)


def kind_of(annotation: Any) -> Kind:
    """The Kind of a resolved annotation (`typing.get_type_hints`)."""
    if typing.get_origin(annotation) is Literal:
        return Kind((annotation,), choices=typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        literals = [a for a in members if typing.get_origin(a) is Literal]
        if len(members) == 1 and literals:
            return Kind(tuple(members), optional, typing.get_args(literals[0]))
        return Kind(tuple(members), optional)
    return Kind((annotation,))


def field_kinds(cls: type) -> dict[str, Kind]:
    hints = typing.get_type_hints(cls)
    return {f.name: kind_of(hints[f.name]) for f in dataclasses.fields(cls)}


def _matches(value: Any, member: Any) -> bool:
    origin = typing.get_origin(member)
    if origin is Literal:
        return value in typing.get_args(member)
    if member is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if member is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(member) if a is not Ellipsis]
        return isinstance(value, origin) and all(_matches(v, args[0]) for v in value) if args else isinstance(
            value, origin)
    return isinstance(value, member)


def check_fields(instance: Any, error: type[Exception] = ConfigError) -> None:
    """Every field's value against its annotation, a number also against its `minimum` (field metadata); a float
    must be finite (NaN and infinity mean nothing as a setting). The error names the class, the field and the value."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(instance)}
    for name, kind in field_kinds(type(instance)).items():
        value = getattr(instance, name)
        if value is None and kind.optional:
            continue
        where = f"{type(instance).__name__}: {name}={value!r}"
        if not any(_matches(value, member) for member in kind.members):
            allowed = f"one of {kind.choices}" if kind.choices else " or ".join(
                getattr(m, "__name__", str(m)) for m in kind.members) + (" or None" if kind.optional else "")
            raise error(f"{where} must be {allowed}")
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{where} must be a finite number")
        least = metadata[name].get("minimum")
        if least is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < least:
            raise error(f"{where} must be at least {least}" + (" (or None)" if kind.optional else ""))
