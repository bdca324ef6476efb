"""`hearth tokenize`: how a model's tokenizer splits text, with ids and pieces."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.cli.common import data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `tokenize` subcommand."""
    parser = sub.add_parser(
        "tokenize",
        parents=[data_dir_options()],
        help="split text into a model's tokens (ids, pieces, count)",
        description="Split TEXT (or standard input) into the tokens a model reads, as plain "
        "text: control-token markers such as <|im_end|> come out as ordinary tokens. Loads "
        "only the model's vocabulary, not its weights.",
    )
    parser.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="a .gguf file or a model name (default: the starter model)",
    )
    parser.add_argument(
        "--json", action="store_true", help='print {"count", "tokens": [{id, piece, bytes}]}'
    )
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the text (default: stdin)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the tokens of the text and how many there are."""
    from app.core.inference.tokenizer import VocabTokenizer
    from app.core.models.library import resolve_model

    text = args.text if args.text is not None else sys.stdin.read()
    path = resolve_model(args.model, open_paths(args))
    tokenizer = VocabTokenizer(path)
    try:
        ids = tokenizer.tokenize(text, add_special=False, parse_special=False)
        pieces = [tokenizer.token_bytes(i) for i in ids]
    finally:
        tokenizer.close()
    if args.json:
        tokens = [
            {"id": i, "piece": p.decode("utf-8", errors="backslashreplace"), "bytes": list(p)}
            for i, p in zip(ids, pieces, strict=True)
        ]
        print(json.dumps({"model": path.name, "count": len(ids), "tokens": tokens}))
        return 0
    width = max((len(str(i)) for i in ids), default=1)
    for token_id, piece in zip(ids, pieces, strict=True):
        print(f"{token_id:>{width}}  {piece.decode('utf-8', errors='backslashreplace')!r}")
    print(f"{len(ids)} token{'s' if len(ids) != 1 else ''} ({path.name})")
    return 0
