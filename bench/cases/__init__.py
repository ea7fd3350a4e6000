"""The registry of benchmark cases: one module per group, each with `cases()` and the functions they name.

A case is a dict: `name` (what --case filters on), `run` ("module:function" in this package),
`params` (keyword arguments of that function) and `quick` (whether --quick runs it).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

GROUPS = ("generation", "decode_step", "forward", "training", "lora", "loading", "int8", "gguf", "modern", "ct2",
          "serve")


def all_cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in GROUPS:
        out.extend(importlib.import_module(f"{__name__}.{group}").cases())
    return out


def find(name: str) -> dict[str, Any]:
    for case in all_cases():
        if case["name"] == name:
            return case
    raise KeyError(f"no benchmark case {name!r}; see python -m bench --list")


def runner(case: dict[str, Any]) -> Callable[..., Any]:
    module, function = case["run"].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
