"""What every `hearth` subcommand shares: one-line usage errors and the data-dir option."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
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
        type=bounded_int(0, 2**31 - 1, "0 = the model's own"),
        metavar="N",
        help="context length in tokens (default 4096; 0 = the model's own)",
    )
    parent.add_argument(
        "--gpu-layers",
        type=bounded_int(-1, 2**31 - 1, "-1 = all"),
        metavar="N",
        help="layers to offload to the GPU (-1 = all)",
    )
    parent.add_argument(
        "--threads", type=thread_count, metavar="N", help="CPU threads (0 = a default)"
    )
    return parent


# llama.cpp's GGML_MAX_N_THREADS: more threads than this overflow its thread pool.
GGML_MAX_N_THREADS = 512
# The largest id or count a flag can name (SQLite's integers are 64-bit).
MAX_FLAG_INT = 2**63 - 1


def bounded_int(low: int, high: int, what: str = "") -> Callable[[str], int]:
    """An argparse `type` for a whole number in [low, high], with a one-line message."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            hint = f" ({what})" if what else ""
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}{hint}")
        return value

    return parse


def machine_threads() -> int:
    """The most CPU threads a flag may ask for here: twice the CPUs, at most llama.cpp's 512.

    Twice, not once, so a test or a benchmark may oversubscribe a small machine; far more
    threads than CPUs hang llama.cpp's thread pool, and more than 512 crash it.
    """
    return max(1, min(GGML_MAX_N_THREADS, 2 * (os.cpu_count() or 1)))


def thread_count(text: str) -> int:
    """`--threads`: 0 (a default) up to `machine_threads()`."""
    cpus = os.cpu_count() or 1
    high = machine_threads()
    return bounded_int(0, high, f"this machine has {cpus} CPU threads; 0 picks a default")(text)


def some_threads(text: str) -> int:
    """`--threads` where leaving the flag out is the default: 1 up to `machine_threads()`."""
    cpus = os.cpu_count() or 1
    return bounded_int(1, machine_threads(), f"this machine has {cpus} CPU threads")(text)
