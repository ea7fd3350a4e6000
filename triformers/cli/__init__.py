"""The `triformers` command line."""

from .main import build_parser, main
from .registry import COMMANDS, Command, register

__all__ = ["main", "build_parser", "COMMANDS", "Command", "register"]
