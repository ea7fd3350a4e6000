"""Text generation for decoder-only and encoder-decoder models: greedy, sampling, beam search, streaming.

`model.generate(...)` (on every triformers model) calls `generate` here. Modules: `options` (argument
checks and defaults from the model config), `processors` (repetition penalty, n-gram blocking,
minimum length, forced tokens, temperature, top-k, top-p), `runner` (feeding the model through a
preallocated KV cache), `search` (the decoding loops), `streamer` (text as it is produced).
"""

from .options import GenerationOptions, resolve_options
from .processors import build_processors
from .beam import beam_search
from .search import generate, sample
from .streamer import TextIteratorStreamer, TextStreamer

__all__ = ["generate", "sample", "beam_search", "GenerationOptions", "resolve_options", "build_processors",
           "TextStreamer", "TextIteratorStreamer"]
