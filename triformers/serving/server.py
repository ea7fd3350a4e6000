"""`serve(options)`: load the model(s), start the engine, and run the app under uvicorn until SIGTERM / SIGINT.

Why Starlette on uvicorn: both are small, widely used and actively maintained ASGI projects (FastAPI is
built on them); Starlette gives routing, streaming responses with disconnect detection and exception
handlers without a schema layer we would not use (requests are checked by `protocol.py` into OpenAI's
error shapes), and uvicorn handles SIGTERM with a graceful shutdown: it stops accepting connections, lets
running responses finish (up to `GRACE` seconds), then runs the app's shutdown, which stops the engine and
fails whatever still waits with a clean error.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .app import Served, create_app
from .embeddings import Embedder
from .engine import Engine
from .options import ServeOptions

log = logging.getLogger("triformers.serving")
GRACE = 30.0  # seconds running responses get to finish after SIGTERM


def _load(path: str, options: ServeOptions, auto_class: Any) -> tuple[Any, Any]:
    from ..pipelines.base import resolve_device, resolve_dtype
    from ..tokenization import AutoTokenizer

    model = auto_class.from_pretrained(path, dtype=resolve_dtype(options.dtype), quantize=options.quantize)
    device = resolve_device(options.device)
    return (model.to(device) if device is not None else model).eval(), AutoTokenizer.from_pretrained(path)


def family_of(path: str) -> str:
    from ..auto import AutoConfig
    from ..dialects import get_dialect

    return get_dialect(AutoConfig.from_pretrained(path).model_type).family


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence ids and the tokenizer's (a chat template's end of turn, <|im_end|>, ...)."""
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos


def build(options: ServeOptions) -> Served:
    """The engine and/or embedder that `options` ask for, loaded."""
    from ..auto import AutoModel, AutoModelForCausalLM

    if options.threads:
        torch.set_num_threads(options.threads)
    for name in ("max_batch", "max_queue", "max_n", "max_body_bytes"):
        if getattr(options, name) < 1:
            raise InputError(f"serve: --{name.replace('_', '-')} must be at least 1")
    engine = embedder = None
    model_name = embedding_name = None
    family = family_of(options.model)
    if family == "decoder":
        model, tokenizer = _load(options.model, options, AutoModelForCausalLM)
        engine = Engine(model, tokenizer, max_batch=options.max_batch, max_queue=options.max_queue,
                        max_context=options.max_context, eos_token_ids=eos_ids(model, tokenizer))
        model_name = options.served_model_name or Path(options.model).name
    elif family == "encoder":
        embedder = Embedder(*_load(options.model, options, AutoModel))
        embedding_name = options.served_model_name or Path(options.model).name
    else:
        raise InputError(f"serve: {options.model} is an {family} model; serve takes a decoder (chat, completions) "
                         "or an encoder (embeddings)")
    if options.embedding_model:
        if embedder is not None:
            raise InputError("serve: --embedding-model goes with a decoder --model; --model is an encoder already")
        if family_of(options.embedding_model) != "encoder":
            raise InputError(f"serve: --embedding-model {options.embedding_model} is not an encoder model")
        embedder = Embedder(*_load(options.embedding_model, options, AutoModel))
        embedding_name = Path(options.embedding_model).name
    return Served(engine, embedder, model_name, embedding_name, api_key=options.api_key, max_n=options.max_n,
                  max_body_bytes=options.max_body_bytes, request_timeout=options.request_timeout)


def serve(options: ServeOptions) -> None:
    import uvicorn

    served = build(options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        yield
        if served.engine is not None:
            served.engine.close()

    config = uvicorn.Config(create_app(served, lifespan), host=options.host, port=options.port,
                            log_level=options.log_level, timeout_graceful_shutdown=GRACE, access_log=False)
    names = ", ".join(n for n in (served.model_name, served.embedding_name) if n)
    log.info("serving %s on http://%s:%d/v1 (%s)", names, options.host, options.port,
             "API key required" if options.api_key else "no API key")
    uvicorn.Server(config).run()
