"""Chat templates: `apply_chat_template` renders a conversation with the tokenizer's Jinja template, as
transformers does (reference: transformers 5.x `utils/chat_template_utils.py` and
`tokenization_utils_base.py` `apply_chat_template`).

Templates come from model folders and the hub, so they are untrusted code. They run in jinja2's
`ImmutableSandboxedEnvironment` with transformers' settings (`trim_blocks`, `lstrip_blocks`, loop controls,
the `{% generation %}` tag for assistant masks) and helpers (`raise_exception`, `strftime_now`, a `tojson`
that does not HTML-escape and takes `indent` / `separators` / `sort_keys`, a `namespace` that refuses
underscore names, a `dict` without the type's attributes). Stricter than transformers: touching an unsafe
attribute (`''.__class__`) fails at once instead of rendering as empty, and `*` / `**` refuse results too
large to build. Everything the template sees is rebuilt from plain JSON-like data (messages, tools,
documents, variables), so no object with methods of its own reaches it.

A template error (syntax, `raise_exception`, a sandbox violation, a failing expression) is a
TokenizerError that names the template and the tokenizer it belongs to.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from ..errors import TokenizerError
from .chat_schema import get_json_schema
from .converters import SPECIAL_KEYS
from .encoding import convert

logger = logging.getLogger("triformers")
MAX_BUILT_ITEMS = 2**24  # `'x' * n`, `[..] * n` in a template: far above any prompt, far below a memory bomb
MAX_POWER_BITS = 2**16  # `a ** b` with integers: bits of the result
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # transformers' marker for the end of the message to continue
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
APPLY_ARGUMENTS = ("conversation", "tools", "documents", "chat_template", "add_generation_prompt",
                   "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
                   "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs", "sanitize_control_tokens")


class _Raised(TemplateError):
    """What the template's `raise_exception(message)` raises."""


class _Spans(Extension):
    """`{% generation %}...{% endgeneration %}`: records where the enclosed (assistant) text lands in the output,
    while a render asks for it (`recording`); a no-op otherwise."""

    tags = {"generation"}
    recording: ContextVar = ContextVar("triformers_generation_spans", default=None)

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_record"), [], [], body).set_lineno(lineno)

    def _record(self, caller: Any) -> str:
        text = caller()
        output = self.recording.get()
        if output is not None:
            output.spans.append((output.length, output.length + len(text)))
        return text


@dataclasses.dataclass
class _Output:
    parts: list = dataclasses.field(default_factory=list)
    length: int = 0  # characters of `parts` so far
    spans: list = dataclasses.field(default_factory=list)


class _TemplateDict:
    """The template's `dict`: builds dicts, and offers nothing of the `dict` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(Namespace):
    """`namespace(...)` whose attributes may not start with an underscore."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805  (jinja's Namespace signature: self in args)
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for name in attrs:
            _TemplateNamespace._check(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check(name)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"a chat template may not set the underscore attribute {name!r} on a namespace")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                built = len(seq) * count if isinstance(seq, (str, list, tuple)) and isinstance(count, int) else 0
                if built > MAX_BUILT_ITEMS:
                    raise SecurityError(f"the template builds a sequence of {built} items; refused")
        elif isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if left.bit_length() * right > MAX_POWER_BITS:
                raise SecurityError(f"the template computes {left} ** {right}, a number too large; refused")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message: Any) -> None:
    raise _Raised(str(message))


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:  # noqa: A002  (the name templates call it with)
    return datetime.now().strftime(format)


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[_Spans, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_TemplateDict(),
                       namespace=_TemplateNamespace)
    return env


@lru_cache(maxsize=64)
def _compile(text: str) -> tuple[jinja2.Template, frozenset[str]]:
    """The compiled template and the variables it reads from outside (what `**kwargs` may set)."""
    env = _environment()
    return env.from_string(text), frozenset(jinja2.meta.find_undeclared_variables(env.parse(text)))


def compile_template(text: str, where: str) -> tuple[jinja2.Template, frozenset[str]]:
    """`_compile`, with a syntax error as a TokenizerError naming `where` and the line."""
    try:
        return _compile(text)
    except TemplateSyntaxError as err:
        raise TokenizerError(f"{where}: Jinja syntax error at line {err.lineno}: {err.message}") from None
    except TemplateError as err:
        raise TokenizerError(f"{where}: {err}") from None


def select_template(tokenizer: Any, chat_template: str | None, tools: Any) -> tuple[str, str]:
    """(template text, a description of where it is from), as transformers' `get_chat_template` picks it."""
    own = tokenizer.chat_template
    source = f"tokenizer {tokenizer.name_or_path!r}" if tokenizer.name_or_path else "this tokenizer"
    if chat_template is not None and not isinstance(chat_template, str):
        raise TokenizerError(f"chat_template must be a template (or a template's name), got "
                             f"{type(chat_template).__name__}")
    if isinstance(own, dict):
        if chat_template is not None and chat_template in own:
            return own[chat_template], f"chat template {chat_template!r} of {source}"
        if chat_template is None:
            name = "tool_use" if tools is not None and "tool_use" in own else "default" if "default" in own else None
            if name is None:
                raise TokenizerError(f"{source} has several chat templates and none is called 'default': pass "
                                     f"chat_template= one of {sorted(own)}")
            return own[name], f"chat template {name!r} of {source}"
    elif chat_template is None:
        if own is None:
            raise TokenizerError(f"{source} has no chat template (no chat_template in tokenizer_config.json, no "
                                 "chat_template.jinja): set tokenizer.chat_template or pass chat_template=...")
        if not isinstance(own, str):
            raise TokenizerError(f"tokenizer.chat_template must be a string or a dict of named strings, got "
                                 f"{type(own).__name__}")
        return own, f"the chat template of {source}"
    return chat_template, "the chat_template passed to apply_chat_template"


def plain(value: Any) -> Any:
    """`value` rebuilt from JSON-like types (str, int, float, bool, None, dict, list, tuple); dataclasses and
    pydantic models as dicts; anything else as a placeholder naming its type: nothing with methods of its own
    reaches a template."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    for base, strip in ((str, str.__str__), (float, float.__float__), (int, int.__int__)):
        if isinstance(value, base):  # subclasses (enums, numpy scalars) stripped to the base type's value
            return strip(value)
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        return plain(value.item())  # numpy scalars, 0-d tensors
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _messages(conversation: Any) -> list[dict]:
    """One conversation's messages as plain dicts, keys with None values dropped (as transformers does: templates
    handle a missing key, not a None), reasoning copied under the names templates read."""
    messages = plain(getattr(conversation, "messages", conversation))
    if not isinstance(messages, list):
        raise TokenizerError(f"a conversation is a list of messages ({{'role': ..., 'content': ...}}), got "
                             f"{type(messages).__name__}")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TokenizerError(f"message {index} of the conversation is not a dict: {message!r:.100}")
        message = {k: v for k, v in message.items() if v is not None}
        reasoning = next((message[k] for k in _REASONING_FIELDS if k in message), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def _tool_schemas(tools: Any) -> list | None:
    """Tools as JSON schemas: a dict is one already; a Python function is converted from its signature and
    docstring (`get_json_schema`)."""
    if tools is None:
        return None
    if not isinstance(tools, (list, tuple)):
        raise TokenizerError(f"tools must be a list of JSON schemas (dicts) or functions, got {type(tools).__name__}")
    schemas = []
    for tool in tools:
        if isinstance(tool, Mapping):
            schemas.append(plain(tool))
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            schemas.append(get_json_schema(tool))
        else:
            raise TokenizerError(f"a tool must be a JSON schema (a dict) or a function with type hints and a "
                                 f"docstring, got {type(tool).__name__}")
    return schemas


def _mark_continuation(chat: list[dict], field: str | bool, template: str) -> tuple[str, list[str]]:
    """Tag the end of the final message so the render can be cut there (`continue_final_message`); returns the
    message's text and the fields tagged."""
    if not chat:
        raise TokenizerError("continue_final_message is set but the conversation is empty")
    field = field if isinstance(field, str) else "content"
    final = chat[-1].get(field)
    if final is None:
        raise TokenizerError(f"continue_final_message is set but the final message has no {field!r} to continue")
    fields = [f for f in _REASONING_FIELDS if chat[-1].get(f) == final] if field in _REASONING_FIELDS else [field]
    if not any(f in template for f in fields):
        raise TokenizerError(f"continue_final_message is set to {field!r}, a field this chat template never reads")
    if isinstance(final, (list, tuple)):  # content blocks: continue the last text block
        block = next((b for b in reversed(final) if isinstance(b, dict) and "text" in b), None)
        if block is None:
            raise TokenizerError("continue_final_message is set but the final message has no text to continue")
        text, block["text"] = block["text"], block["text"] + _CONTINUE_TAG
        return text, fields
    if not isinstance(final, str):
        raise TokenizerError(f"continue_final_message: the final message's {field!r} is not text")
    for f in fields:
        chat[-1][f] = chat[-1][f] + _CONTINUE_TAG
    return final, fields


def _cut_at_continuation(rendered: str, final: str, where: str) -> str:
    """The render up to the end of the final message (without the tag, and without the template's own ending)."""
    if final.strip() not in rendered or _CONTINUE_TAG.strip() not in rendered:
        raise TokenizerError(f"{where}: continue_final_message is set but the final message does not appear in the "
                             f"rendered chat (the template changes it); final message: {final.strip()[:200]!r}")
    at = rendered.rindex(_CONTINUE_TAG.strip())
    if rendered[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:at]
    return rendered[:at].rstrip()  # the template trimmed the tag's trailing space: trim the message's too


def render(template: str, where: str, conversations: list, tools: Any = None, documents: Any = None,
           add_generation_prompt: bool = False, continue_final_message: bool | str = False,
           variables: dict[str, Any] | None = None) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Each conversation rendered with `template`, and the character spans of its `{% generation %}` blocks."""
    compiled, _ = compile_template(template, where)
    if documents is not None and (not isinstance(documents, (list, tuple))
                                  or not all(isinstance(d, Mapping) for d in documents)):
        raise TokenizerError("documents must be a list of dicts (with 'title' and 'text' keys, as templates expect)")
    context = {"tools": plain(_tool_schemas(tools)), "documents": plain(documents),
               "add_generation_prompt": add_generation_prompt, **plain(variables or {})}
    rendered, all_spans = [], []
    for conversation in conversations:
        chat = _messages(conversation)
        final = _mark_continuation(chat, continue_final_message, template)[0] if continue_final_message else None
        output = _Output()
        token = _Spans.recording.set(output)
        try:
            for part in compiled.generate(messages=chat, **context):
                output.parts.append(part)
                output.length += len(part)
        except _Raised as err:
            raise TokenizerError(f"{where} raised an exception: {err}") from None
        except Exception as err:  # a sandbox violation, an undefined name, a failing expression: the template's
            raise TokenizerError(f"{where} failed: {type(err).__name__}: {err}") from None
        finally:
            _Spans.recording.reset(token)
        text = "".join(output.parts)
        rendered.append(_cut_at_continuation(text, final, where) if final is not None else text)
        all_spans.append(output.spans)
    return rendered, all_spans


def _assistant_mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token overlapping a `{% generation %}` span (offsets and spans both in order)."""
    mask, span = [0] * len(offsets), 0
    for index, (start, end) in enumerate(offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        if span == len(spans):
            break
        if end > spans[span][0]:
            mask[index] = 1
    return mask


def apply_chat_template(tokenizer: Any, conversation: Any, tools: Any = None, documents: Any = None,
                        chat_template: str | None = None, add_generation_prompt: bool = False,
                        continue_final_message: bool | str = False, tokenize: bool = True,
                        padding: bool | str = False, truncation: bool | str = False, max_length: int | None = None,
                        return_tensors: str | None = None, return_dict: bool = True,
                        return_assistant_tokens_mask: bool = False, tokenizer_kwargs: dict | None = None,
                        sanitize_control_tokens: bool = False, **variables: Any) -> Any:
    """transformers' `apply_chat_template`: the rendered text(s) with `tokenize=False`; else the token ids, or with
    `return_dict=True` (the default, as in transformers 5) the tokenizer's BatchEncoding (and `assistant_masks`).
    A conversation is a list of {"role", "content", ...} dicts (or objects with `.messages`); a list of them is a
    batch. Other keywords are the template's own variables: one the template never reads is an error."""
    if sanitize_control_tokens:
        raise TokenizerError("apply_chat_template: sanitize_control_tokens=True is not supported by triformers")
    if continue_final_message and add_generation_prompt:
        raise TokenizerError("apply_chat_template: continue_final_message and add_generation_prompt exclude each "
                             "other (continue the final message, or open a new assistant turn)")
    if return_assistant_tokens_mask and (not tokenize or not return_dict or continue_final_message):
        raise TokenizerError("apply_chat_template: return_assistant_tokens_mask=True needs tokenize=True and "
                             "return_dict=True, and excludes continue_final_message")
    template, where = select_template(tokenizer, chat_template, tools)
    readable = compile_template(template, where)[1]
    unknown = sorted(set(variables) - readable)
    if unknown:
        raise TokenizerError(f"apply_chat_template: unknown keyword argument(s) {', '.join(unknown)}: not arguments "
                             f"of apply_chat_template and not variables {where} reads "
                             f"({', '.join(sorted(readable - {'messages'})) or 'none'})")
    if isinstance(conversation, (list, tuple)) and not conversation:
        raise TokenizerError("apply_chat_template: the conversation is empty (give at least one message)")
    batched = isinstance(conversation, (list, tuple)) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
    conversations = list(conversation) if batched else [conversation]
    if return_assistant_tokens_mask and not re.search(r"\{%-?\s*generation\s*-?%\}", template):
        logger.warning("return_assistant_tokens_mask=True but %s has no {%% generation %%} block: the mask is all 0",
                       where)
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if k in SPECIAL_KEYS}
    rendered, spans = render(template, where, conversations, tools, documents, add_generation_prompt,
                             continue_final_message, {**specials, **variables})
    if not tokenize:
        return rendered if batched else rendered[0]
    options = {**(tokenizer_kwargs or {}), "padding": padding, "truncation": truncation, "max_length": max_length,
               "add_special_tokens": False, "return_tensors": return_tensors}
    out = tokenizer(rendered if batched else rendered[0], **options)
    if not return_dict:
        return out["input_ids"]
    if return_assistant_tokens_mask:
        masks = [_assistant_mask(e.offsets, s) for e, s in zip(out.encodings, spans, strict=True)]
        if return_tensors:
            out["assistant_masks"] = convert({"assistant_masks": masks}, False, return_tensors)["assistant_masks"]
        else:
            out["assistant_masks"] = masks if batched else masks[0]
    return out
