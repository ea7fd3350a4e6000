"""The `triformers` command's verbs: each is a `Command` in `COMMANDS`, added by `register`.

`add_arguments(parser)` declares a verb's flags and `run(namespace)` parses them into the typed options
of the library function it calls. Adding a verb is one `register(Command(...))` call in a module that
`cli/main.py` imports.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add a sub-command to `triformers`."""
    COMMANDS[command.name] = command
    return command
