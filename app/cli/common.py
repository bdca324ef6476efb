"""What every `hearth` subcommand shares: one-line usage errors and the data-dir option."""

from __future__ import annotations

import argparse
from contextlib import suppress
from typing import NoReturn

from app.core.paths import AppPaths


class UsageError(Exception):
    """A bad flag or value: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def data_dir_options() -> Parser:
    """Parent parser with `--data-dir` (also HEARTH_HOME)."""
    parent = Parser(add_help=False)
    parent.add_argument(
        "--data-dir", metavar="DIR", help="keep all Hearth data here (also HEARTH_HOME)"
    )
    return parent


def open_paths(args: argparse.Namespace) -> AppPaths:
    """The app's folders (created if possible) for these arguments, with logging set up."""
    from app.core.logs import setup_logging
    from app.core.paths import app_paths

    paths = app_paths(args.data_dir)
    # A read-only (or full) data folder: commands that only read still work; one that
    # writes fails later with a message naming the folder (see `app.cli.main`).
    with suppress(OSError):
        paths.ensure()
    setup_logging(paths.logs)
    return paths


def model_options() -> Parser:
    """Parent parser with the options that pick and load a model."""
    parent = Parser(add_help=False)
    parent.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="a .gguf file or a model name (default: the starter model)",
    )
    parent.add_argument(
        "--ctx",
        type=int,
        metavar="N",
        help="context length in tokens (default 4096; 0 = the model's own)",
    )
    parent.add_argument(
        "--gpu-layers", type=int, metavar="N", help="layers to offload to the GPU (-1 = all)"
    )
    parent.add_argument("--threads", type=int, metavar="N", help="CPU threads")
    return parent
