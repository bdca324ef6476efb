"""`hearth next`: the next token's candidates before and after the sampler chain.

    hearth next [--model M] [--system TEXT] [sampler flags] [--top N] [--json] PROMPT

Prints the candidates for the reply's first token: probability under the model alone
(temperature 1) and after the sampler chain (llama.cpp's, re-run exactly), which sampler
cut each removed one, entropy before and after, how many tokens survive, and the token
the seed would pick. `--json` prints one JSON object (see `JSON_SCHEMA_VERSION`):

    {"version": 1, "model": str, "position": int, "prompt_tokens": int,
     "vocabulary": int, "settings": {...SamplingSettings...},
     "entropy_before_bits": float, "entropy_after_bits": float | null,
     "survivors": int | null, "mass_kept": float | null,
     "pick": {"id": int, "text": str, "rule": "seed" | "greedy" | "likeliest"} | null,
     "removed": {"top-k" | "typical-p" | "top-p" | "min-p" | "temperature 0": int},
     "candidates": [{"id": int, "text": str, "logit": float, "before": float,
                     "after": float, "cut_by": str | null, "penalized": bool}],
     "rest": {"before": float, "after": float | null}, "note": str}

`null` after-side values mean mirostat (explained in "note", not simulated).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.cli.common import Parser, bounded_int, data_dir_options, model_options

JSON_SCHEMA_VERSION = 1


def register(sub: Any) -> None:
    """Add the `next` subcommand."""
    from app.cli.chat import SAMPLER_FLAGS

    own = Parser(add_help=False)
    own.add_argument("--system", metavar="TEXT", help="system prompt")
    for flag, (field, kind) in SAMPLER_FLAGS.items():
        if field != "max_tokens":
            own.add_argument(flag, dest=field, type=kind, metavar="N" if kind is int else "X")
    own.add_argument(
        "--top",
        type=bounded_int(1, 200, "--top"),
        default=20,
        metavar="N",
        help="candidates to list (default 20)",
    )
    own.add_argument("--json", action="store_true", help="print one JSON object")
    own.add_argument(
        "--plain-template",
        action="store_true",
        help="format the chat as a plain 'User:/Assistant:' transcript",
    )
    parser = sub.add_parser(
        "next",
        parents=[data_dir_options(), model_options(), own],
        help="the next token's candidates before and after the samplers",
    )
    parser.add_argument("prompt", metavar="PROMPT")
    parser.set_defaults(handler=_next, stop=[], max_tokens=None)


def _next(args: argparse.Namespace) -> int:
    from app.cli.chat import _clean_arguments, _load_engine
    from app.cli.text_input import TextCleaner, tolerant_output
    from app.core.inference.explorer import ExplorerRow
    from app.core.inference.messages import Message

    tolerant_output()
    _clean_arguments(args, TextCleaner())
    engine, settings = _load_engine(args)
    try:
        messages = ([Message("system", args.system)] if args.system else []) + [
            Message("user", args.prompt)
        ]
        result = engine.next_logits(messages)
        model = engine.loaded.info.path.name if engine.loaded is not None else ""
    finally:
        engine.close()
    row = ExplorerRow(
        result.logits, result.tokens, n_ctx=result.n_ctx, texts=result.texts, top=args.top
    )
    found = row.explore(settings)
    record = to_json(found, settings, model, result.position, result.prompt_tokens)
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print_table(record)
    return 0


def to_json(
    found: Any, settings: Any, model: str, position: int, prompt_tokens: int
) -> dict[str, Any]:
    """The stable JSON form of an `Exploration` (documented in this module)."""
    pick = next((c for c in found.candidates if c.token_id == found.pick), None)
    return {
        "version": JSON_SCHEMA_VERSION,
        "model": model,
        "position": position,
        "prompt_tokens": prompt_tokens,
        "vocabulary": found.n_vocab,
        "settings": settings.to_dict(),
        "entropy_before_bits": round(found.entropy_before, 6),
        "entropy_after_bits": None
        if found.entropy_after is None
        else round(found.entropy_after, 6),
        "survivors": found.survivors,
        "mass_kept": found.mass_kept,
        "pick": None
        if found.pick is None
        else {
            "id": found.pick,
            "text": pick.text if pick else f"#{found.pick}",
            "rule": found.pick_rule,
        },
        "removed": dict(found.removed),
        "candidates": [
            {
                "id": c.token_id,
                "text": c.text,
                "logit": c.logit,
                "before": c.before,
                "after": c.after,
                "cut_by": c.cut_by,
                "penalized": c.penalized,
            }
            for c in found.candidates
        ],
        "rest": {"before": found.rest_before, "after": found.rest_after},
        "note": found.note,
    }


def print_table(record: dict[str, Any]) -> None:
    """The next-token table for people."""
    out = sys.stdout
    out.write(f"{'token':<24} {'model':>8} {'after':>8}  cut by\n")
    mirostat = record["survivors"] is None
    for c in record["candidates"]:
        text = json.dumps(c["text"], ensure_ascii=False)
        after = "-" if mirostat else f"{c['after'] * 100:7.2f}%"
        mark = " <- pick" if record["pick"] and record["pick"]["id"] == c["id"] else ""
        cut = c["cut_by"] or ""
        if c["penalized"]:
            cut = f"{cut} (penalized)".strip()
        out.write(f"{text[:24]:<24} {c['before'] * 100:7.2f}% {after:>8}  {cut}{mark}\n")
    rest = record["rest"]
    rest_after = "-" if rest["after"] is None else f"{rest['after'] * 100:7.2f}%"
    out.write(f"{'(rest of the vocabulary)':<24} {rest['before'] * 100:7.2f}% {rest_after:>8}\n")
    if mirostat:
        out.write(f"entropy {record['entropy_before_bits']:.2f} bits. {record['note']}\n")
        return
    out.write(
        f"entropy {record['entropy_before_bits']:.2f} -> {record['entropy_after_bits']:.2f} "
        f"bits; {record['survivors']:,} of {record['vocabulary']:,} tokens survive; "
        f"{record['mass_kept'] * 100:.1f}% of the model's probability kept\n"
    )
    pick = record["pick"]
    if pick is not None:
        rule = {"seed": "the seed picks", "greedy": "temperature 0 picks"}.get(
            pick["rule"], "likeliest survivor"
        )
        out.write(f"{rule}: {json.dumps(pick['text'], ensure_ascii=False)} (id {pick['id']})\n")
    if record["note"]:
        out.write(record["note"] + "\n")
