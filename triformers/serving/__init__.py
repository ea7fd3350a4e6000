"""An OpenAI-compatible server: the continuous-batching engine (engine.py, slots.py, sampling.py), the embedder,
the protocol (protocol.py) and the HTTP app (app.py), run by `serve` (server.py; `triformers serve`)."""

from .engine import Engine, Event, QueueFull, Request
from .options import ServeOptions
from .sampling import RowSettings

__all__ = ["Engine", "Event", "QueueFull", "Request", "RowSettings", "ServeOptions"]
