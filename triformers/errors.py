"""The library's own exception types: every error a user can cause says what and where.

All derive from `TriformersError`, so `except TriformersError` catches anything triformers
raises on purpose; each also derives from the builtin a caller would expect (ValueError, ...).
"""

from __future__ import annotations


class TriformersError(Exception):
    """Base class of every error triformers raises on purpose."""


class ConfigError(TriformersError, ValueError):
    """A config.json (or config override) is malformed, inconsistent or unsupported."""


class CheckpointError(TriformersError, ValueError):
    """Weights are missing, unused, mis-shaped, truncated, corrupt or unsafe."""


class ModelNotFoundError(TriformersError, OSError):
    """A name or path resolves to no model folder (locally, in the cache, or on the hub)."""


class TokenizerError(TriformersError, ValueError):
    """Tokenizer files are missing or malformed, or a tokenizer call got bad arguments."""


class InputError(TriformersError, ValueError):
    """A model call got bad input: shapes, out-of-vocabulary ids, over-long sequences, arguments."""


class TrainingError(TriformersError):
    """Training cannot go on (non-finite loss, bad arguments, bad resume state)."""
