"""The OpenAI API's request and response shapes: parsing with clear errors, and building responses.

Requests are checked field by field against what the OpenAI API reference allows (types, ranges); an
unknown field is refused as OpenAI refuses it ("Unrecognized request argument supplied"), a known field
that this server does not implement (tools, logit_bias, a JSON response_format, ...) is refused by name
rather than silently ignored. Errors are `APIError`s, rendered as OpenAI's error object
`{"error": {"message", "type", "param", "code"}}` with the HTTP status the API uses for them.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .sampling import Choice, RowSettings

MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_TOP_LOGPROBS = 20


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# -- fields ----------------------------------------------------------------------------------------------
_TYPES = {"number": ((int, float), "a number"), "integer": ((int,), "an integer"), "boolean": ((bool,), "a boolean"),
          "string": ((str,), "a string"), "array": ((list,), "an array"), "object": ((dict,), "an object")}


def _field(body: dict, name: str, kind: str, default: Any = None, minimum: float | None = None,
           maximum: float | None = None) -> Any:
    """body[name] checked to be of `kind` (and within [minimum, maximum]), or `default` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    types, described = _TYPES[kind]
    if not isinstance(value, types) or (kind in ("number", "integer") and isinstance(value, bool)):
        raise invalid(f"'{name}' must be {described}, got {type(value).__name__} {_short(value)}", name,
                      "invalid_type")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise invalid(f"'{name}' must be {bounds}, got {value}", name, "invalid_value")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_keys(body: Any, known: set[str], unsupported: dict[str, Any], what: str) -> None:
    if not isinstance(body, dict):
        raise invalid(f"the request body must be a JSON object, got {type(body).__name__}")
    for name in body:
        if name in unsupported:
            if body[name] not in (None, unsupported[name]):
                raise invalid(f"'{name}' is not supported by this server ({what})", name, "unsupported_parameter")
        elif name not in known:
            raise invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")


@dataclass
class GenerationParams:
    """What a chat or completion request asks of the engine (its prompt is tokenised by the app)."""

    model: str
    settings: RowSettings
    max_tokens: int | None  # None: up to the context
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    messages: list[dict[str, str]] | None = None  # chat
    prompts: list[Any] | None = None  # completions: texts or token id lists


_COMMON = {"model", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream", "stream_options",
           "presence_penalty", "frequency_penalty", "logprobs", "user"}
_CHAT = _COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "metadata", "store",
                   "service_tier", "parallel_tool_calls"}
_CHAT_UNSUPPORTED = {"tools": None, "tool_choice": "none", "functions": None, "function_call": "none",
                     "logit_bias": None, "audio": None, "modalities": None, "prediction": None,
                     "reasoning_effort": None, "web_search_options": None}
_COMPLETION = _COMMON | {"prompt"}
_COMPLETION_UNSUPPORTED = {"echo": False, "suffix": None, "best_of": 1, "logit_bias": None}


def _common(body: dict, max_n: int) -> dict[str, Any]:
    model = _field(body, "model", "string")
    if model is None:
        raise invalid("'model' is required", "model", "missing_required_parameter")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise invalid("'stop' must be a string or an array of strings", "stop", "invalid_type")
    stop = [s for s in (stop or []) if s]
    if len(stop) > MAX_STOP:
        raise invalid(f"'stop' may hold at most {MAX_STOP} sequences, got {len(stop)}", "stop", "invalid_value")
    stream_options = _field(body, "stream_options", "object", {})
    stream = _field(body, "stream", "boolean", False)
    if stream_options and not stream:
        raise invalid("'stream_options' is only allowed when 'stream' is true", "stream_options")
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise invalid("'stream_options.include_usage' must be a boolean", "stream_options", "invalid_type")
    return dict(model=model, n=_field(body, "n", "integer", 1, 1, max_n), stop=stop,
                seed=_field(body, "seed", "integer", None, -2**63, 2**63 - 1), stream=stream,
                include_usage=include_usage,
                temperature=float(_field(body, "temperature", "number", 1.0, 0, 2)),
                top_p=float(_field(body, "top_p", "number", 1.0, 0, 1)),
                presence_penalty=float(_field(body, "presence_penalty", "number", 0.0, -2, 2)),
                frequency_penalty=float(_field(body, "frequency_penalty", "number", 0.0, -2, 2)))


def _params(common: dict, max_tokens: int | None, top_logprobs: int | None, **extra: Any) -> GenerationParams:
    settings = RowSettings(temperature=common.pop("temperature"), top_p=common.pop("top_p"),
                           presence_penalty=common.pop("presence_penalty"),
                           frequency_penalty=common.pop("frequency_penalty"), top_logprobs=top_logprobs)
    if settings.top_p == 0.0:
        settings.top_p = 1e-9  # only the likeliest token, as top_p -> 0 means
    return GenerationParams(settings=settings, max_tokens=max_tokens, **common, **extra)


def parse_chat(body: Any, max_n: int) -> GenerationParams:
    _check_keys(body, _CHAT, _CHAT_UNSUPPORTED, "chat completions")
    response_format = _field(body, "response_format", "object")
    if response_format is not None and response_format.get("type", "text") != "text":
        raise invalid(f"response_format {response_format.get('type')!r} is not supported by this server: it "
                      "does not constrain generation to JSON; use the default 'text'", "response_format",
                      "unsupported_parameter")
    common = _common(body, max_n)
    max_tokens = _field(body, "max_completion_tokens", "integer", None, 1)
    max_tokens = _field(body, "max_tokens", "integer", max_tokens, 1)
    logprobs = _field(body, "logprobs", "boolean", False)
    top = _field(body, "top_logprobs", "integer", None, 0, MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise invalid("'top_logprobs' needs 'logprobs' set to true", "top_logprobs")
    messages = _field(body, "messages", "array")
    if not messages:
        raise invalid("'messages' must be a non-empty array", "messages", "missing_required_parameter")
    return _params(common, max_tokens, (top or 0) if logprobs else None,
                   messages=[_message(m, i) for i, m in enumerate(messages)])


def _message(message: Any, i: int) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid(f"'{where}' must be an object with 'role' and 'content'", where, "invalid_type")
    role, content = message.get("role"), message.get("content")
    if role not in ("system", "developer", "user", "assistant", "tool"):
        raise invalid(f"'{where}.role' must be system, developer, user, assistant or tool, got {_short(role)}",
                      f"{where}.role", "invalid_value")
    if isinstance(content, list):  # content parts: text only
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise invalid(f"'{where}.content' parts must be text parts ({{'type': 'text', 'text': ...}}); "
                              "this server takes no images, audio or files", f"{where}.content", "invalid_value")
            texts.append(part["text"])
        content = "".join(texts)
    if content is None and role == "assistant":
        content = ""
    if not isinstance(content, str):
        raise invalid(f"'{where}.content' must be a string or an array of text parts", f"{where}.content",
                      "invalid_type")
    return {"role": "system" if role == "developer" else role, "content": content}


def parse_completion(body: Any, max_n: int) -> GenerationParams:
    _check_keys(body, _COMPLETION, _COMPLETION_UNSUPPORTED, "completions")
    common = _common(body, max_n)
    max_tokens = _field(body, "max_tokens", "integer", 16, 1)  # the completions API's own default
    logprobs = _field(body, "logprobs", "integer", None, 0, 5)
    prompts = _texts_or_ids(body, "prompt", "'prompt' must be a string, an array of strings, or an array of "
                                            "token ids")
    return _params(common, max_tokens, logprobs, prompts=prompts)


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def _texts_or_ids(body: Any, name: str, message: str) -> list[Any]:
    """body[name] as a list of inputs: one string or token id list, or a non-empty array of them."""
    value = body.get(name)
    if isinstance(value, str) or _token_list(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) or _token_list(v) for v in value):
        return list(value)
    raise invalid(message, name, "invalid_type" if value is not None else "missing_required_parameter")


def parse_embeddings(body: Any) -> tuple[str, list[Any], str]:
    """(model, inputs (texts or token id lists), encoding_format)."""
    _check_keys(body, {"model", "input", "encoding_format", "user", "dimensions"}, {}, "embeddings")
    model = _field(body, "model", "string")
    if model is None:
        raise invalid("'model' is required", "model", "missing_required_parameter")
    inputs = _texts_or_ids(body, "input", "'input' must be a non-empty string, array of strings, or array of "
                                          "token ids")
    if any(v == "" for v in inputs):
        raise invalid("'input' may not hold empty strings", "input", "invalid_value")
    encoding = _field(body, "encoding_format", "string", "float")
    if encoding not in ("float", "base64"):
        raise invalid(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}", "encoding_format",
                      "invalid_value")
    _field(body, "dimensions", "integer", None, 1)
    return model, inputs, encoding


# -- responses -------------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprobs(tokens: list[Choice], text_of) -> dict[str, Any]:
    """OpenAI's chat `logprobs`: {"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]}."""
    def entry(token: int, logprob: float) -> dict[str, Any]:
        text = text_of(token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
    return {"content": [dict(entry(c.token, c.logprob), top_logprobs=[entry(t, lp) for t, lp in c.top or []])
                        for c in tokens], "refusal": None}


def completion_logprobs(tokens: list[Choice], text_of, offset: int = 0) -> dict[str, Any]:
    """The legacy completions `logprobs`: parallel lists of tokens, their log-probabilities, offsets, top dicts."""
    texts = [text_of(c.token) for c in tokens]
    offsets, position = [], offset
    for text in texts:
        offsets.append(position)
        position += len(text)
    return {"tokens": texts, "token_logprobs": [c.logprob for c in tokens],
            "top_logprobs": [{text_of(t): lp for t, lp in c.top or []} for c in tokens], "text_offset": offsets}


def embedding_data(vectors: list[list[float]], encoding: str) -> list[dict[str, Any]]:
    def encode(vector: list[float]) -> Any:
        if encoding == "base64":  # little-endian float32, as OpenAI's API and client use
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return vector
    return [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
