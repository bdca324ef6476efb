"""`hearth repair`: recover a damaged conversation database into a fresh one."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.common import data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `repair` subcommand."""
    cmd = sub.add_parser(
        "repair",
        parents=[data_dir_options()],
        help="recover a damaged conversation database (close Hearth first)",
        description="Check the conversation database; if it is damaged, copy every readable "
        "row into a fresh database, keep the damaged file aside, and say what was recovered "
        "and what was lost. Close the Hearth window first.",
    )
    cmd.add_argument(
        "--force", action="store_true", help="rebuild the database even if it looks intact"
    )
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check, then repair if needed; print the report. Exit 0 when the database is usable."""
    from app.core.chats.repair import check_database, repair_database
    from app.core.chats.store import DB_FILE_NAME
    from app.core.errors import HearthError

    path = open_paths(args).data / DB_FILE_NAME
    if not path.is_file():
        raise HearthError(f"There is no database at {path}: nothing to repair.", path=path)
    problems = check_database(path)
    if not problems and not args.force:
        print(f"{path} is intact; nothing to repair (--force rebuilds it anyway).")
        return 0
    if problems:
        print(f"{path} is damaged: {problems[0]}" + (" …" if len(problems) > 1 else ""))
    report = repair_database(path)
    print("\n".join(report.lines()))
    return 0
