"""The `triformers` command (also `python -m triformers`): one argparse sub-command per registered verb.

Verbs live in `train.py` (pretrain, finetune), `use.py` (fill-mask, generate, text2text, classify, ner,
qa, embed), `chat.py` (chat), `serve.py` (serve) and `bench.py`; each registers a `Command` (see `registry.py`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import TriformersError
from . import train, use, chat, serve, bench  # noqa: F401,I001  (each registers its verbs, in this order for --help)
from .registry import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triformers", description="encoder, decoder and encoder-decoder "
                                     "transformers with Hugging Face checkpoint parity")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return COMMANDS[args.command].run(args)
    except TriformersError as err:  # a clear message instead of a traceback; anything else is a bug
        print(f"triformers {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
