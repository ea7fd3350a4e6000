"""`triformers serve`: an OpenAI-compatible HTTP server with continuous batching (see triformers/serving/).

    triformers serve --model smollm2-dir                       # http://127.0.0.1:8000/v1
    triformers serve --model gpt2-dir --embedding-model minilm-dir --max-batch 64 --api-key secret
"""

from __future__ import annotations

import argparse

from ..serving.options import ServeOptions
from .flags import add_flags, parse_flags
from .registry import Command, register


def _run_serve(args: argparse.Namespace) -> int:
    from ..serving.server import serve

    serve(parse_flags(ServeOptions, args))
    return 0


register(Command("serve", "an OpenAI-compatible server (chat, completions, embeddings) with continuous batching",
                 lambda parser: add_flags(parser, ServeOptions, "server"), _run_serve))
