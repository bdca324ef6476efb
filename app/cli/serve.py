"""`hearth serve`: the loaded model behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from app.cli.common import UsageError, data_dir_options, model_options, open_paths

EXAMPLE_CURL = """curl {url}/chat/completions \\
  -H 'Content-Type: application/json'{auth} \\
  -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'"""
EXAMPLE_PYTHON = """from openai import OpenAI
client = OpenAI(base_url="{url}", api_key="{key}")
reply = client.chat.completions.create(
    model="{model}", messages=[{{"role": "user", "content": "Hello!"}}])
print(reply.choices[0].message.content)"""


def register(sub: Any) -> None:
    """Add the `serve` subcommand."""
    serve = sub.add_parser(
        "serve",
        parents=[data_dir_options(), model_options()],
        help="serve the model over an OpenAI-compatible HTTP API",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 = any)")
    keys = serve.add_mutually_exclusive_group()
    keys.add_argument("--api-key", metavar="KEY", help="require this Bearer key")
    keys.add_argument("--api-key-file", metavar="FILE", help="require the key in FILE")
    serve.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN call the API (repeatable; default: none)",
    )
    serve.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="replies generated at once"
    )
    serve.add_argument(
        "--queue", type=int, default=16, metavar="N", help="requests that may wait (default 16)"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from app.core.inference.load_options import LoadOptions
    from app.core.models.library import resolve_model
    from app.core.server.app import ServerConfig
    from app.core.server.auth import is_loopback, read_key_file, stored_key
    from app.core.server.handle import ServerHandle
    from app.core.server.scheduler import Scheduler, State

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535 (got {args.port})")
    if args.parallel < 1 or args.queue < 1:
        raise UsageError("--parallel and --queue must be at least 1")
    paths = open_paths(args)
    path = resolve_model(args.model, paths)
    key: str | None = args.api_key
    key_note = ""
    if args.api_key_file:
        key = read_key_file(Path(args.api_key_file).expanduser())
        key_note = f"API key: from {args.api_key_file}"
    elif key is None and not is_loopback(args.host):
        key, where, created = stored_key(paths.config)
        key_note = (
            f"API key (shown once; stored in {where}): {key}"
            if created
            else f"API key: the one stored in {where}"
        )
    options = LoadOptions(
        n_ctx=args.ctx if args.ctx is not None else 4096,
        n_gpu_layers=args.gpu_layers,
        n_threads=args.threads,
    )

    scheduler = Scheduler(
        lambda engine: _load(engine, path, options, paths.cache),
        queue_size=args.queue,
        parallel=args.parallel,
    )
    config = ServerConfig(
        host=args.host, port=args.port, api_key=key, cors_origins=tuple(args.cors)
    )
    handle = ServerHandle(scheduler, config)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, _setter(stop))
    previous_term = signal.signal(signal.SIGTERM, _setter(stop))
    try:
        url = handle.start()  # first, so a port in use fails before the slow load
        scheduler.start()
        print(f"Hearth is loading {path.name} for {url} ...", flush=True)
        while scheduler.wait_loaded(0.2) is State.LOADING and not stop.is_set():
            pass
        state = scheduler.state
        if stop.is_set():
            return 130
        if state is not State.READY:
            error = scheduler.load_error
            print(f"hearth: error: {error}", file=sys.stderr)
            return 1
        model = scheduler.model
        assert model is not None
        _announce(url, model.id, key, key_note)
        while not stop.wait(0.5):
            pass
        print("Stopping: cancelling replies, closing connections, freeing the model...")
        return 0
    finally:
        scheduler.cancel_all()
        handle.stop()
        scheduler.stop()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _load(engine: Any, path: Path, options: Any, cache: Path) -> Any:
    """Load on the scheduler thread, after the crash probe (as `hearth ask` does)."""
    from app.core.inference.load_probe import checked_options, probe_cache_dir
    from app.core.machine.load_verdicts import LoadVerdicts
    from app.core.server.scheduler import describe_loaded

    verdicts = LoadVerdicts(probe_cache_dir(cache))
    options, warnings = checked_options(path, options, verdicts)  # a crash ends a child only
    for warning in warnings:
        print(f"hearth: warning: {warning}", file=sys.stderr)
    engine.load(path, options)
    return describe_loaded(engine)


def _setter(event: threading.Event) -> Any:
    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        event.set()

    return on_signal


def _announce(url: str, model: str, key: str | None, key_note: str) -> None:
    auth = f" \\\n  -H 'Authorization: Bearer {key}'" if key else ""
    lines = [
        f"Serving {model} at {url}",
        *([key_note] if key_note else []),
        "",
        "Try it:",
        EXAMPLE_CURL.format(url=url, model=model, auth=auth),
        "",
        "From Python (pip install openai):",
        EXAMPLE_PYTHON.format(url=url, model=model, key=key or "none"),
        "",
        "Press Ctrl+C to stop.",
    ]
    print("\n".join(lines), flush=True)
