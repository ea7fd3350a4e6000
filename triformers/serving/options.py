"""`ServeOptions`: every setting of `triformers serve`, with its default and help (the CLI is generated from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..training.fields import option


@dataclass
class ServeOptions:
    model: str = option(help="model folder or hub id: a decoder (chat and completions) or an encoder (embeddings)")
    embedding_model: str | None = option(None, help="an encoder to serve /v1/embeddings beside a decoder --model")
    served_model_name: str | None = option(None, help="the name clients pass as 'model' (default: the folder's name)")
    host: str = option("127.0.0.1", help="address to bind; 0.0.0.0 exposes the server to the network")
    port: int = option(8000, help="TCP port")
    api_key: str | None = option(None, help="require 'Authorization: Bearer KEY' on /v1/* (default: no key)")
    max_batch: int = option(32, help="sequences decoded together (slots of the KV cache)")
    max_queue: int = option(256, help="requests that may wait for a slot; more get HTTP 429")
    max_context: int | None = option(None, help="positions per slot (default: the model's context, else 2048)")
    max_n: int = option(8, help="the most choices ('n') one request may ask for")
    max_body_bytes: int = option(1 << 20, help="the largest request body, in bytes (HTTP 413 above it)")
    request_timeout: float = option(600.0, help="seconds a request may take, queue included, before it is failed")
    device: str | None = option(None, help="cpu, cuda, cuda:1, ...")
    dtype: str | None = option(None, help="float32, bfloat16, float16, auto")
    quantize: Literal["int8", "int4"] | None = option(None, help="weight-only quantization of the linear layers")
    threads: int | None = option(None, help="torch threads (default: torch's)")
    log_level: str = option("info", help="uvicorn's log level")
