"""The HTTP face of the server: a Starlette app of OpenAI's endpoints over the engine and the embedder.

    GET  /health                 liveness and the engine's occupancy (no key needed)
    GET  /v1/models              the served model(s)
    POST /v1/chat/completions    messages through the model's chat template; SSE chunks with "stream": true
    POST /v1/completions         prompt text (or token ids)
    POST /v1/embeddings          mean-pooled, normalised vectors of an encoder model

Handlers tokenise in a worker thread, hand a `Request` to the engine and wait on an asyncio queue that the
engine fills from its own thread (`loop.call_soon_threadsafe`). A client that disconnects cancels its
request: a streaming response is cancelled by Starlette when the disconnect arrives, a plain one watches
for it while it waits. Every error is an OpenAI error object; an unexpected one is logged with its
traceback and answered 500 without it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import TriformersError
from . import protocol
from .embeddings import Embedder
from .engine import Engine, Event, QueueFull, Request, ShuttingDown
from .protocol import APIError, GenerationParams, invalid

log = logging.getLogger("triformers.serving")
ERROR_STATUS = {"timeout": 504, "shutdown": 503, "internal": 500}


@dataclass
class Served:
    """What the app serves: a generation engine and/or an embedder, their names and the limits."""

    engine: Engine | None
    embedder: Embedder | None
    model_name: str | None
    embedding_name: str | None
    api_key: str | None = None
    max_n: int = 8
    max_body_bytes: int = 1 << 20
    request_timeout: float | None = 600.0


def create_app(served: Served, lifespan: Any = None) -> Starlette:
    def authorized(request: HTTPRequest) -> None:
        if served.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), served.api_key.encode()):
            raise APIError(401, "Incorrect API key provided" if header else "Missing API key: send "
                           "'Authorization: Bearer KEY'", code="invalid_api_key")

    async def read_json(request: HTTPRequest) -> Any:
        authorized(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > served.max_body_bytes:
            raise _too_large(served.max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > served.max_body_bytes:
                raise _too_large(served.max_body_bytes)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise invalid(f"the request body is not valid JSON: {err}", code="invalid_json") from None

    async def health(request: HTTPRequest) -> JSONResponse:
        stats = served.engine.stats() if served.engine is not None else {}
        return JSONResponse({"status": "ok", **stats})

    async def models(request: HTTPRequest) -> JSONResponse:
        authorized(request)
        names = [n for n in (served.model_name, served.embedding_name) if n]
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                         "owned_by": "triformers"} for n in names]})

    async def chat(request: HTTPRequest):
        params = protocol.parse_chat(await read_json(request), served.max_n)
        engine = _engine_for(served, params.model)
        prompt = await run_in_threadpool(_chat_prompt, engine.tokenizer, params.messages)
        return await _generate(served, request, params, [prompt], chat=True)

    async def completions(request: HTTPRequest):
        params = protocol.parse_completion(await read_json(request), served.max_n)
        engine = _engine_for(served, params.model)
        prompts = await run_in_threadpool(_completion_prompts, engine, params.prompts)
        return await _generate(served, request, params, prompts, chat=False)

    async def embeddings(request: HTTPRequest) -> JSONResponse:
        model, inputs, encoding = protocol.parse_embeddings(await read_json(request))
        if served.embedder is None or model != served.embedding_name:
            raise _no_model(model, served.embedding_name, "embeddings")
        try:
            vectors, tokens = await run_in_threadpool(served.embedder.embed, inputs)
        except TriformersError as err:
            raise invalid(str(err), "input") from None
        return JSONResponse({"object": "list", "data": protocol.embedding_data(vectors, encoding), "model": model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    routes = [Route("/health", health), Route("/v1/models", models), Route("/v1/chat/completions", chat,
              methods=["POST"]), Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/embeddings", embeddings, methods=["POST"])]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _unexpected}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


# -- generation --------------------------------------------------------------------------------------------
def _engine_for(served: Served, model: str) -> Engine:
    if served.engine is None or model != served.model_name:
        raise _no_model(model, served.model_name, "chat and completions")
    return served.engine


def _chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    except TriformersError as err:
        raise invalid(f"the messages could not be rendered with the model's chat template: {err}", "messages") \
            from None


def _completion_prompts(engine: Engine, prompts: list[Any]) -> list[list[int]]:
    out = []
    for prompt in prompts:
        ids = engine.tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else list(prompt)
        bad = [t for t in ids if not 0 <= t < engine.model.config.vocab_size]
        if bad:
            raise invalid(f"'prompt' holds token ids outside the vocabulary (0..{engine.model.config.vocab_size - 1})"
                          f": {bad[:5]}", "prompt", "invalid_value")
        if not ids:
            raise invalid("'prompt' is empty after tokenisation", "prompt", "invalid_value")
        out.append(ids)
    return out


def _check_lengths(engine: Engine, params: GenerationParams, prompts: list[list[int]]) -> int:
    """The max_tokens of every choice; 400 when a prompt and its completion do not fit the context."""
    where = "messages" if params.messages is not None else "prompt"
    if params.n > engine.max_batch:
        raise invalid(f"'n' is {params.n} but this server decodes at most {engine.max_batch} sequences at once",
                      "n", "invalid_value")
    longest = max(len(p) for p in prompts)
    context = engine.context
    if longest >= context:
        raise invalid(f"This model's maximum context length is {context} tokens. However, your prompt is {longest} "
                      "tokens, which leaves no room for a completion.", where, "context_length_exceeded")
    if params.max_tokens is None:
        return context - longest
    if longest + params.max_tokens > context:
        raise invalid(f"This model's maximum context length is {context} tokens. However, you requested "
                      f"{longest + params.max_tokens} tokens ({longest} in the prompt, {params.max_tokens} in the "
                      "completion). Please reduce the prompt or the completion length.", "max_tokens",
                      "context_length_exceeded")
    return params.max_tokens


async def _generate(served: Served, http: HTTPRequest, params: GenerationParams, prompts: list[list[int]],
                    chat: bool):
    engine = served.engine
    max_tokens = _check_lengths(engine, params, prompts)
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    requests = []
    for k, prompt in enumerate(prompts):
        def deliver(events: list[Event], base: int = k * params.n) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (base, events))
        requests.append(Request(prompt=prompt, settings=params.settings, max_tokens=max_tokens, deliver=deliver,
                                n=params.n, stop=params.stop, seed=params.seed, timeout=served.request_timeout))
    try:
        for request in requests:
            engine.submit(request)
    except QueueFull as err:
        _cancel(requests)
        raise APIError(429, str(err), "rate_limit_error", code="rate_limit_exceeded") from None
    except ShuttingDown as err:
        _cancel(requests)
        raise APIError(503, str(err), "server_error", code="shutting_down") from None
    stream = _events(queue, len(requests))
    reply = _Reply(engine.tokenizer, params, chat, sum(len(p) for p in prompts))
    if params.stream:
        return StreamingResponse(_sse(reply, stream, requests), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
    collect = asyncio.ensure_future(_collect(reply, stream))
    watch = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({collect, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not collect.done():  # the client went away (or we are cancelled): free the slots now
            collect.cancel()
            _cancel(requests)
    if not collect.done() or collect.cancelled():
        return Response(status_code=499)  # nobody is listening; nginx's "client closed request"
    if collect.exception() is not None:
        _cancel(requests)  # one prompt failed: the others of the request stop too
    return JSONResponse(collect.result())


def _cancel(requests: list[Request]) -> None:
    for request in requests:
        request.cancel()


async def _disconnected(http: HTTPRequest) -> None:
    while (await http.receive())["type"] != "http.disconnect":
        pass


async def _events(queue: asyncio.Queue, count: int) -> AsyncIterator[tuple[int, Event]]:
    """(choice index, event) until every request has sent its usage; an error event raises its APIError."""
    finished = 0
    while finished < count:
        base, events = await queue.get()
        for event in events:
            if event.error is not None:
                status = ERROR_STATUS.get(event.code, 500)
                raise APIError(status, event.error, "server_error" if status >= 500 else "invalid_request_error",
                               code=event.code)
            if event.index is None:
                finished += 1
            yield (base + event.index if event.index is not None else None), event


class _Reply:
    """Accumulates one response (choices, usage) and renders it whole or as stream chunks."""

    def __init__(self, tokenizer: Any, params: GenerationParams, chat: bool, prompt_tokens: int):
        self.tokenizer, self.params, self.chat = tokenizer, params, chat
        self.id = protocol.new_id("chatcmpl" if chat else "cmpl")
        self.created = protocol.now()
        self.prompt_tokens, self.completion_tokens = prompt_tokens, 0
        self.texts: dict[int, list[str]] = {}
        self.tokens: dict[int, list] = {}
        self.finish: dict[int, str] = {}
        self.logprobs = params.settings.top_logprobs is not None

    def text_of(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def add(self, index: int | None, event: Event) -> None:
        if index is None:
            self.completion_tokens += event.usage[1]
            return
        self.texts.setdefault(index, []).append(event.text)
        if event.token is not None and self.logprobs:
            self.tokens.setdefault(index, []).append(event.token)
        if event.finish_reason is not None:
            self.finish[index] = event.finish_reason

    def _logprobs(self, tokens: list, offset: int = 0) -> Any:
        if not self.logprobs:
            return None
        if self.chat:
            return protocol.chat_logprobs(tokens, self.text_of)
        return protocol.completion_logprobs(tokens, self.text_of, offset)

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.texts):
            text, logprobs = "".join(self.texts[index]), self._logprobs(self.tokens.get(index, []))
            if self.chat:
                choices.append({"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                                "logprobs": logprobs, "finish_reason": self.finish.get(index)})
            else:
                choices.append({"index": index, "text": text, "logprobs": logprobs,
                                "finish_reason": self.finish.get(index)})
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.params.model, "system_fingerprint": None, "choices": choices,
                "usage": protocol.usage(self.prompt_tokens, self.completion_tokens)}

    def chunk(self, index: int, event: Event | None, first: bool = False) -> dict[str, Any] | None:
        tokens = [event.token] if event is not None and event.token is not None and self.logprobs else []
        text = event.text if event is not None else ""
        finish = event.finish_reason if event is not None else None
        if not first and not text and not tokens and finish is None:
            return None
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text or tokens else {})
            choice = {"index": index, "delta": delta, "logprobs": self._logprobs(tokens) if tokens else None,
                      "finish_reason": finish}
        else:
            offset = sum(len(t) for t in self.texts.get(index, [])) - len(text)
            choice = {"index": index, "text": text, "logprobs": self._logprobs(tokens, offset) if tokens else None,
                      "finish_reason": finish}
        return self._envelope([choice])

    def _envelope(self, choices: list, usage: dict | None = None) -> dict[str, Any]:
        body = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.params.model, "system_fingerprint": None, "choices": choices}
        if self.params.include_usage:
            body["usage"] = usage
        return body

    def usage_chunk(self) -> dict[str, Any]:
        return self._envelope([], protocol.usage(self.prompt_tokens, self.completion_tokens))


async def _collect(reply: _Reply, stream: AsyncIterator[tuple[int, Event]]) -> dict[str, Any]:
    async for index, event in stream:
        reply.add(index, event)
    return reply.whole()


def _sse_line(body: Any) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(reply: _Reply, stream: AsyncIterator[tuple[int, Event]], requests: list[Request]) -> AsyncIterator[str]:
    try:
        if reply.chat:
            for index in range(len(requests) * reply.params.n):
                yield _sse_line(reply.chunk(index, None, first=True))
        async for index, event in stream:
            reply.add(index, event)
            if index is not None:
                chunk = reply.chunk(index, event)
                if chunk is not None:
                    yield _sse_line(chunk)
        if reply.params.include_usage:
            yield _sse_line(reply.usage_chunk())
    except APIError as err:  # the status line is sent already: the error goes in the stream, as OpenAI's does
        yield _sse_line(err.body())
    except Exception as err:
        log.exception("unexpected error while streaming")
        yield _sse_line(APIError(500, f"internal server error ({type(err).__name__}); see the server's log",
                                 "server_error").body())
    finally:
        _cancel([r for r in requests if not r.done])  # a disconnect lands here (cancellation): free the slots
    yield "data: [DONE]\n\n"


# -- errors ------------------------------------------------------------------------------------------------
def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than this server's limit of {limit} bytes",
                    code="request_too_large")


def _no_model(asked: str, served: str | None, what: str) -> APIError:
    if served is None:
        return APIError(404, f"this server has no model for {what}", code="model_not_found", param="model")
    return APIError(404, f"The model '{asked}' does not exist; this server serves '{served}' for {what}",
                    code="model_not_found", param="model")


async def _api_error(request: HTTPRequest, err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


async def _http_error(request: HTTPRequest, err: HTTPException) -> JSONResponse:
    body = APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}").body()
    return JSONResponse(body, status_code=err.status_code, headers=getattr(err, "headers", None))


async def _unexpected(request: HTTPRequest, err: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    body = APIError(500, f"internal server error ({type(err).__name__}); see the server's log", "server_error").body()
    return JSONResponse(body, status_code=500)
