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
from app.cli import (
    chat,
    doctor,
    hub,
    models,
    next,
    quantize,
    remote,
    repair,
    self_test,
    serve,
    starter,
    tokenize,
    transfer,
)
from app.cli.common import Parser, UsageError, data_dir_options

COMMANDS = (
    chat,
    next,
    starter,
    transfer,
    doctor,
    models,
    quantize,
    hub,
    repair,
    tokenize,
    serve,
    remote,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(
        prog="hearth",
        description="Private, offline chat with local language models.",
        parents=[data_dir_options()],
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument(
        "--model", metavar="PATH_OR_NAME", help="model to open in the app (or to self-test)"
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation headless: load the model, generate, open the window",
    )
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hearth` and `python -m app`."""
    from app.core.errors import HearthError

    try:
        args = build_parser().parse_args(argv)
        if args.self_test:
            if args.command is not None:
                raise UsageError("--self-test takes no subcommand")
            return self_test.run(args)
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
    except OSError as exc:  # a full or read-only disk is the person's to fix: no traceback
        fault = _storage_fault(exc)
        if fault is None:
            raise
        print(f"hearth: error: {fault}", file=sys.stderr)
        return 1


def _storage_fault(exc: OSError) -> Exception | None:
    from app.core.storage import os_error_fault

    return os_error_fault(exc, what="Hearth cannot save its files there")


def _run_gui(args: argparse.Namespace) -> int:
    try:
        from app.ui.app import run_app
    except ImportError as exc:  # a broken install or bundle: Qt or a library is missing
        return _import_failed(args, exc)
    return int(run_app(data_dir=args.data_dir, model=args.model))


def _import_failed(args: argparse.Namespace, exc: ImportError) -> int:
    """Log why the GUI could not be imported and say where the log is."""
    import logging

    from app.cli.common import open_paths
    from app.core.logs import current_log_file

    try:
        open_paths(args)
        logging.getLogger("hearth").critical("Hearth could not start", exc_info=exc)
    except OSError:
        pass
    where = current_log_file()
    details = f" Details: {where}" if where else ""
    print(f"hearth: could not start: {exc}.{details}", file=sys.stderr)
    return 1
