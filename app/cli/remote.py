"""Remote servers from the terminal: `hearth connections`, `--backend` for ask/chat, and
`hearth models --remote`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.common import UsageError, data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `connections` subcommand."""
    cmd = sub.add_parser(
        "connections",
        parents=[data_dir_options()],
        help="saved OpenAI-compatible servers: add, list, test, remove",
    )
    actions = cmd.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="save a server (replaces one of the same name)")
    add.add_argument("name")
    add.add_argument("url", help="base URL, such as http://gpu-box:8000/v1")
    add.add_argument("--api-key-env", metavar="VAR", help="take the API key from this variable")
    add.add_argument("--ca-bundle", metavar="FILE", help="the server's CA certificate (PEM)")
    actions.add_parser("list", help="the saved servers")
    test = actions.add_parser("test", help="list a server's models and time the round trip")
    test.add_argument("name")
    remove = actions.add_parser("remove", help="forget a server and its key")
    remove.add_argument("name")
    cmd.set_defaults(handler=run)


def _env_key(variable: str | None) -> str | None:
    if not variable:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise UsageError(f"--api-key-env {variable}: that environment variable is empty or unset")
    return value


def run(args: argparse.Namespace) -> int:
    """`hearth connections ...`."""
    from app.core.inference.connections import PRIVACY_NOTE, ConnectionStore, check_endpoint

    store = ConnectionStore(open_paths(args).config)
    if args.action == "add":
        ca = Path(args.ca_bundle).expanduser().resolve() if args.ca_bundle else None
        saved = store.add(args.name, args.url, _env_key(args.api_key_env), ca)
        where = f"; key kept in {store.key_storage}" if saved.has_key else ""
        print(f"Saved {saved.name}: {saved.base_url}{where}")
        print(f"hearth: note: {PRIVACY_NOTE}", file=sys.stderr)
    elif args.action == "list":
        connections = store.all()
        if not connections:
            print("No connections. Add one: hearth connections add NAME URL")
        for c in connections:
            extras = [" key" if c.has_key else "", f" CA {c.ca_bundle}" if c.ca_bundle else ""]
            print(f"{c.name}  {c.base_url}{''.join(extras)}")
    elif args.action == "test":
        facts = check_endpoint(store.endpoint(args.name))
        print(
            f"{args.name}: {len(facts.models)} model(s), {facts.kind} server, "
            f"round trip {facts.round_trip_ms:.0f} ms"
        )
        for model in facts.models:
            print(f"  {model.id}" + (f"  ({model.n_ctx:,} tokens)" if model.n_ctx else ""))
    elif args.action == "remove":
        store.remove(args.name)
        print(f"Removed {args.name}")
    return 0


def endpoint_for(args: argparse.Namespace) -> Any:
    """The `Endpoint` for `--backend` (a URL, or a saved connection's name)."""
    from app.core.inference.connections import ConnectionStore
    from app.core.inference.remote_http import Endpoint

    key = _env_key(args.api_key_env)
    ca = Path(args.ca_bundle).expanduser().resolve() if args.ca_bundle else None
    if "://" in args.backend:
        return Endpoint(args.backend, api_key=key, ca_bundle=ca)
    saved = ConnectionStore(open_paths(args).config).endpoint(args.backend)
    if key is None and ca is None:
        return saved
    return Endpoint(
        saved.base_url,
        api_key=key or saved.api_key,
        ca_bundle=ca or saved.ca_bundle,
        name=saved.name,
    )


def connect_backend(args: argparse.Namespace) -> Any:
    """A `RemoteBackend` for `--backend` / `--model` (ask and chat)."""
    from app.core.inference.remote import RemoteBackend

    for flag, value in (("--ctx", args.ctx), ("--gpu-layers", args.gpu_layers)):
        if value is not None:
            raise UsageError(f"{flag} sets up a local model; the server decides it with --backend")
    if args.plain_template:
        raise UsageError("--plain-template needs a local model; the server renders the chat")
    backend = RemoteBackend(endpoint_for(args), args.model)
    missing = backend.capabilities
    if args.logprobs is not None and not missing.token_probabilities:
        print(
            f"hearth: note: {backend.endpoint.label} returns no token probabilities",
            file=sys.stderr,
        )
    return backend


def print_remote_models(args: argparse.Namespace) -> int:
    """`hearth models --remote`: each saved connection's models (or why not)."""
    from app.core.errors import RemoteError
    from app.core.inference.connections import ConnectionStore, check_endpoint

    store = ConnectionStore(open_paths(args).config)
    rows: list[dict[str, Any]] = []
    failures = 0
    for connection in store.all():
        try:
            facts = check_endpoint(store.endpoint(connection.name))
        except RemoteError as exc:
            failures += 1
            rows.append({"connection": connection.name, "error": exc.message})
            continue
        for model in facts.models:
            rows.append(
                {
                    "connection": connection.name,
                    "model": model.id,
                    "context": model.n_ctx,
                    "server": facts.kind,
                    "url": connection.base_url,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No connections. Add one: hearth connections add NAME URL")
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['connection']}: {row['error']}")
            else:
                ctx = f"  {row['context']:,} tokens" if row["context"] else ""
                print(f"{row['connection']}  {row['model']}  ({row['server']}){ctx}")
    return 1 if failures and failures == len(store.all()) else 0
