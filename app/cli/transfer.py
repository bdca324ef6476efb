"""`hearth export` and `hearth import`: conversations to and from JSON or Markdown files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli.common import MAX_FLAG_INT, bounded_int, data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `export` and `import` subcommands."""
    export = sub.add_parser(
        "export",
        parents=[data_dir_options()],
        help="write conversations as JSON or Markdown",
        description="Write conversations as JSON (every branch, settings and stats) or "
        "Markdown (the branch on show). Default: every conversation, JSON, to stdout.",
    )
    export.add_argument(
        "--format",
        choices=("json", "md"),
        help="file format (default: from the -o suffix, else json)",
    )
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--conversation",
        type=bounded_int(1, MAX_FLAG_INT),
        metavar="ID",
        help="only this conversation",
    )
    which.add_argument(
        "--all", action="store_true", help="every conversation not in the bin (the default)"
    )
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    export.set_defaults(handler=run_export)

    imp = sub.add_parser(
        "import",
        parents=[data_dir_options()],
        help="add the conversations of a Hearth JSON export",
    )
    imp.add_argument(
        "file", type=Path, metavar="FILE.json", help="a file written by `hearth export`"
    )
    imp.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    """Write the export to the output file or stdout."""
    from app.core.chats.export_import import export_json, export_markdown, write_text
    from app.core.chats.store import DB_FILE_NAME, Store
    from app.core.errors import HearthError, RecordNotFoundError

    output: Path | None = args.output
    fmt = args.format or ("md" if output is not None and output.suffix == ".md" else "json")
    paths = open_paths(args)
    existing = (paths.data / DB_FILE_NAME).is_file()
    with Store.open(paths, read_only=existing) as store:  # reads on a read-only disk too
        ids = None
        if args.conversation is not None:
            try:
                store.conversation(args.conversation)
            except RecordNotFoundError as exc:
                raise HearthError(
                    f"There is no conversation with id {args.conversation} "
                    "(`hearth export --format json` shows every conversation with its id)."
                ) from exc
            ids = [args.conversation]
        skipped: list[str] = []
        if fmt == "md":
            text = export_markdown(store, ids, skipped=skipped)
        else:
            text = export_json(store, ids, skipped=skipped)
        count = len(ids) if ids is not None else len(store.list_conversations())
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(output, text)
        print(f"Exported {count} conversation(s) to {output}", file=sys.stderr)
    for problem in skipped:
        print(f"hearth: warning: damaged data skipped: {problem}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Add every conversation in the file to the store."""
    from app.core.chats.export_import import import_file
    from app.core.chats.store import Store

    with Store.open(open_paths(args)) as store:
        imported = import_file(store, args.file)
        messages = sum(len(store.messages(c.id)) for c in imported)
    print(f"Imported {len(imported)} conversation(s), {messages} message(s), from {args.file}")
    for conversation in imported:
        print(f"  {conversation.id}\t{conversation.title}")
    return 0
