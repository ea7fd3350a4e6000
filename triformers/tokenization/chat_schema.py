"""`get_json_schema(function)`: the JSON schema a chat template shows the model for a Python tool, built from the
function's type hints and its Google-style docstring, field for field as transformers builds it (reference:
transformers 5.x `utils/chat_template_utils.py` `get_json_schema`), so that `tools=[my_function]` renders the
same prompt in both libraries.

    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> float:
        '''Today's temperature.

        Args:
            city: The city.
            unit: Celsius or Fahrenheit.
        '''

becomes {"type": "function", "function": {"name": "get_weather", "description": "Today's temperature.",
"parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}, "unit":
{"type": "string", "enum": ["c", "f"], "description": ...}}, "required": ["city"]}, "return": {"type": "number"}}}.
A hint with no JSON form (a custom class), a missing hint or a parameter without a description is a
TokenizerError naming the function and the parameter.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from enum import Enum
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from ..errors import TokenizerError

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_PLAIN = {**{k: {"type": v} for k, v in _SCALARS.items()}, list: {"type": "array"}, tuple: {"type": "array"},
          dict: {"type": "object"}, Any: {}}
_DESCRIPTION = re.compile(r"^(.*?)[\n\s]*(Args:|Returns:|Raises:|\Z)", re.DOTALL)
_ARGS = re.compile(r"\n\s*Args:\n(.*?)[\n\s]*(Returns:|Raises:|\Z)", re.DOTALL)
_ARG = re.compile(r"(?:^|\n)([ \t]*)(\w+)(?:[ \t]*\([^()\n]*\))?:\s*(.*?)\s*"
                  r"(?=\n(?!\1[ \t])[ \t]*\w+(?:[ \t]*\([^()\n]*\))?:|\Z)", re.DOTALL)
_RETURNS = re.compile(r"\n\s*Returns:\n\s*(.*?)[\n\s]*(Raises:|\Z)", re.DOTALL)
_CHOICES = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)


class _Unconvertible(TokenizerError):
    pass


def _enum(values: list) -> dict:
    kinds = list(dict.fromkeys(_SCALARS[type(v)] for v in values))
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": values}


def hint_schema(hint: Any) -> dict:
    """The JSON schema of one type hint."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is None and isinstance(hint, type) and issubclass(hint, Enum):
        values = [member.value for member in hint]
        if not values or any(type(v) not in _SCALARS for v in values):
            raise _Unconvertible(f"the Enum {hint.__name__} has no members, or values that are not JSON scalars")
        return _enum(values)
    if origin is None:
        try:
            return dict(_PLAIN[hint])
        except (KeyError, TypeError):
            raise _Unconvertible(f"the type hint {hint!r} has no JSON schema (use int, float, str, bool, Enum, "
                                 "Literal, and list / tuple / dict / Union of those, or write the schema)") from None
    if origin is Union or origin is types.UnionType:
        subtypes = [hint_schema(t) for t in args if t is not type(None)]
        if len(subtypes) == 1:
            schema = subtypes[0]
        elif all(s.keys() == {"type"} and isinstance(s["type"], str) for s in subtypes):
            names = sorted({s["type"] for s in subtypes})
            schema = {"type": names[0] if len(names) == 1 else names}
        else:
            schema = {"anyOf": subtypes}
        if type(None) in args:
            schema["nullable"] = True
        return schema
    if origin is Literal and args:
        if any(type(a) not in _SCALARS for a in args):
            raise _Unconvertible(f"Literal{list(args)} holds values that are not JSON scalars")
        return _enum(list(args))
    if origin is list:
        return {"type": "array", "items": hint_schema(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1 or ... in args:
            raise _Unconvertible(f"the tuple hint {hint!r} has one element or '...': use list[...] instead")
        return {"type": "array", "prefixItems": [hint_schema(t) for t in args]}
    if origin is dict:
        return {"type": "object", **({"additionalProperties": hint_schema(args[1])} if len(args) == 2 else {})}
    raise _Unconvertible(f"the type hint {hint!r} has no JSON schema")


def _parameters(func: Callable, name: str) -> dict:
    """The "parameters" object (and a "return" entry when the return hint converts)."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    receiver = params[0].name if params and params[0].name in ("self", "cls") \
        and params[0].annotation is inspect.Parameter.empty else None
    required = []
    for param in params:
        if param.name == receiver:
            continue
        if param.annotation is inspect.Parameter.empty:
            raise TokenizerError(f"tool {name}: argument {param.name!r} has no type hint")
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    properties = {}
    for key, hint in get_type_hints(func).items():
        if key == receiver:
            continue
        if key == "return":
            try:
                properties[key] = hint_schema(hint)
            except _Unconvertible:
                pass  # the model never writes the return value: an odd return hint does not stop the tool
        else:
            try:
                properties[key] = hint_schema(hint)
            except _Unconvertible as err:
                raise TokenizerError(f"tool {name}: argument {key!r}: {err}") from None
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def get_json_schema(func: Callable) -> dict:
    """The tool schema of `func` (see the module docstring)."""
    name = getattr(func, "__name__", "operation")
    doc = inspect.getdoc(func)
    if not doc:
        raise TokenizerError(f"tool {name}: a function given as a tool needs a docstring (its description)")
    doc = doc.strip()
    description = _DESCRIPTION.search(doc)
    args_block = _ARGS.search(doc)
    returns = _RETURNS.search(doc)
    arg_docs = {}
    if args_block:
        lines = "\n".join(line for line in args_block.group(1).split("\n") if line.strip())
        arg_docs = {m[1]: re.sub(r"\s*\n+\s*", " ", m[2].strip()) for m in _ARG.findall(lines)}
    parameters = _parameters(func, name)
    returned = parameters["properties"].pop("return", None)
    if returned is not None and returns:
        returned["description"] = returns.group(1).strip()
    for arg, schema in parameters["properties"].items():
        if arg not in arg_docs:
            raise TokenizerError(f"tool {name}: the docstring's Args: section has no description of {arg!r}")
        text = arg_docs[arg]
        choices = _CHOICES.search(text)
        if choices:
            try:
                values = json.loads(choices.group(1))
            except ValueError:
                raise TokenizerError(f"tool {name}: the (choices: ...) of {arg!r} is not a JSON list") from None
            schema["enum"] = [c.strip() if isinstance(c, str) else c for c in values]
            text = text[:choices.start()].strip()
        schema["description"] = text
    function = {"name": name, "description": description.group(1).strip() if description else None,
                "parameters": parameters}
    if returned is not None:
        function["return"] = returned
    return {"type": "function", "function": function}
