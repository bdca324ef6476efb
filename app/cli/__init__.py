"""The `hearth` command: the GUI by default, plus terminal subcommands.

Each subcommand module has `register(subparsers)`, which adds its parser and sets
`handler`; `main` dispatches to it. Imports of heavy modules (llama.cpp, Qt) happen inside
the handlers so `hearth --help` and bad flags answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.cli import chat, doctor, starter, transfer
from app.cli.common import Parser, UsageError, data_dir_options

COMMANDS = (chat, starter, transfer, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(
        prog="hearth",
        description="Private, offline chat with local language models.",
        parents=[data_dir_options()],
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument("--model", metavar="PATH_OR_NAME", help="model to open in the app")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hearth` and `python -m app`."""
    from app.core.errors import HearthError

    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            return _run_gui(args)
        return int(args.handler(args))
    except UsageError as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return 2
    except HearthError as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        return 130


def _run_gui(args: argparse.Namespace) -> int:
    from app.ui.app import run_app

    return int(run_app(data_dir=args.data_dir, model=args.model))
