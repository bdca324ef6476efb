"""`hearth models`: every model on this machine, and the folders the library scans."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.cli.common import data_dir_options, open_paths

if TYPE_CHECKING:
    from app.core.models.library import LibraryModel

_NAME_WIDTH = 48
_FIT_LABELS = {
    "fits": "fits",
    "untried": "untried",
    "tight": "tight",
    "too_big": "too big",
    "unknown": "?",
}


def register(sub: Any) -> None:
    """Add the `models` subcommand."""
    cmd = sub.add_parser(
        "models",
        parents=[data_dir_options()],
        help="list the models on this machine (Hearth's, Hugging Face cache, LM Studio, "
        "GPT4All, Ollama, added folders)",
    )
    cmd.add_argument("--json", action="store_true", help="print the models as a JSON array")
    cmd.add_argument(
        "--add-folder", metavar="DIR", help="also list the .gguf files in this folder from now on"
    )
    cmd.add_argument(
        "--remove-folder", metavar="DIR", help="stop listing a folder added with --add-folder"
    )
    cmd.add_argument("--folders", action="store_true", help="show the added folders")
    cmd.add_argument(
        "--hearth-only",
        action="store_true",
        help="skip the Hugging Face cache and the other apps' folders",
    )
    cmd.add_argument(
        "--remote",
        action="store_true",
        help="list the models of each saved connection (hearth connections) instead",
    )
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List the library, or change its folders."""
    from pathlib import Path

    from app.core.models.library import LibraryFolders, scan_library

    if args.remote:
        from app.cli.remote import print_remote_models

        return print_remote_models(args)
    paths = open_paths(args)
    folders = LibraryFolders(paths.config)
    if args.add_folder or args.remove_folder or args.folders:
        if args.add_folder:
            folders.add(Path(args.add_folder))
            print(f"Added {Path(args.add_folder).expanduser().resolve()}")
        if args.remove_folder:
            folders.remove(Path(args.remove_folder))
            print(f"Removed {args.remove_folder}")
        _print_folders(folders.list(), as_json=args.json)
        return 0
    models = scan_library(paths, include_other_apps=not args.hearth_only)
    if args.json:
        print(json.dumps([model.to_dict() for model in models], indent=2))
    else:
        print("\n".join(table_lines(models)))
    return 0


def _print_folders(folders: Sequence[Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([str(folder) for folder in folders], indent=2))
    elif folders:
        print("Library folders:")
        print("\n".join(f"  {folder}" for folder in folders))
    else:
        print("No folders added.")


def table_lines(models: Sequence[LibraryModel]) -> list[str]:
    """The models as a text table, with each unusable file explained below it."""
    from app.core.units import format_bytes

    if not models:
        return ["No models found. Run `hearth starter`, or add a folder with --add-folder DIR."]
    header = ("NAME", "QUANT", "SIZE", "CONTEXT", "SOURCE", "FIT")
    rows = [header]
    notes: list[str] = []
    warnings: list[str] = []
    for model in models:
        name = model.name
        if model.is_projector:
            name += " [mmproj]"
        if len(model.files) > 1:
            name += f" [{len(model.files)} parts]"
        if len(name) > _NAME_WIDTH:
            name = name[: _NAME_WIDTH - 1] + "…"
        fit = "projector" if model.is_projector else _FIT_LABELS.get(model.fit, model.fit)
        if model.problem:
            fit = "problem"
            notes.append(f"  {model.path}: {model.problem}")
        warnings += [f"  {model.path}: {warning}" for warning in model.warnings]
        rows.append(
            (
                name,
                model.quant or "-",
                format_bytes(model.size_bytes),
                f"{model.context_length:,}" if model.context_length else "-",
                model.source,
                fit,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    if notes:
        lines += ["", "Files that cannot be used:", *notes]
    if warnings:
        lines += ["", "Files that load but look wrong:", *warnings]
    if any(model.fit == "untried" for model in models):
        lines += ["", "untried: fits in memory; not loaded with this llama.cpp yet."]
    return lines
