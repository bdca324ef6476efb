"""`hearth ask` and `hearth chat`: replies streamed in the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from app.cli.common import Parser, data_dir_options, model_options, open_paths
from app.cli.text_input import TextCleaner, tolerant_output, tolerant_stdin

log = logging.getLogger("hearth.cli")

# Flag name -> SamplingSettings field.
SAMPLER_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--temperature": ("temperature", float),
    "--top-k": ("top_k", int),
    "--top-p": ("top_p", float),
    "--min-p": ("min_p", float),
    "--typical-p": ("typical_p", float),
    "--repeat-penalty": ("repeat_penalty", float),
    "--repeat-last-n": ("repeat_last_n", int),
    "--presence-penalty": ("presence_penalty", float),
    "--frequency-penalty": ("frequency_penalty", float),
    "--mirostat": ("mirostat", int),
    "--mirostat-tau": ("mirostat_tau", float),
    "--mirostat-eta": ("mirostat_eta", float),
    "--seed": ("seed", int),
    "--max-tokens": ("max_tokens", int),
}
JSON_KEYS = (
    "reply",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "ttft_ms",
    "prefill_tps",
    "decode_tps",
    "stop_reason",
    "seed",
)


def register(sub: Any) -> None:
    """Add the `ask` and `chat` subcommands."""
    gen = Parser(add_help=False)
    gen.add_argument("--system", metavar="TEXT", help="system prompt")
    for flag, (field, kind) in SAMPLER_FLAGS.items():
        gen.add_argument(flag, dest=field, type=kind, metavar="N" if kind is int else "X")
    gen.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)"
    )
    gen.add_argument(
        "--overflow",
        choices=("stop", "drop-oldest"),
        default=None,
        help="when the chat outgrows the context: stop with a message, or drop the oldest turns",
    )
    gen.add_argument(
        "--json", action="store_true", help="after each reply print one JSON line of stats"
    )
    gen.add_argument(
        "--plain-template",
        action="store_true",
        help="format the chat as a plain 'User:/Assistant:' transcript, not the model's template",
    )
    gen.add_argument(
        "--logprobs",
        type=_top_n,
        metavar="N",
        help="show each token's probability and its N (0-20) most likely alternatives: "
        "a table after the reply, or `logprobs` (OpenAI shape) in the --json line",
    )
    remote = gen.add_argument_group(
        "a model on a server (vLLM, SGLang, llama-server, Ollama, Hearth)"
    )
    remote.add_argument(
        "--backend",
        metavar="URL_OR_NAME",
        help="an OpenAI-compatible server's base URL (http://host:8000/v1) or a saved "
        "connection's name; --model then names the server's model (default: its first)",
    )
    remote.add_argument(
        "--api-key-env", metavar="VAR", help="read the server's API key from this variable"
    )
    remote.add_argument(
        "--ca-bundle", metavar="FILE", help="trust the server's TLS certificate authority in FILE"
    )
    parents = [data_dir_options(), model_options(), gen]
    ask = sub.add_parser("ask", parents=parents, help="one reply, streamed to stdout")
    ask.add_argument("prompt", metavar="PROMPT")
    ask.add_argument(
        "--show-prompt",
        action="store_true",
        help="print the rendered prompt, part by part with token counts, to stderr first",
    )
    ask.set_defaults(handler=_ask)
    chat = sub.add_parser("chat", parents=parents, help="interactive chat in the terminal")
    chat.set_defaults(handler=_chat)


def _top_n(text: str) -> int:
    from app.core.inference.token_probs import MAX_TOP_N

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number 0 to {MAX_TOP_N}") from None
    if not 0 <= value <= MAX_TOP_N:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_TOP_N} (got {value})")
    return value


def _settings(args: argparse.Namespace) -> Any:
    from app.core.inference.sampling import SamplingSettings

    values = {field: getattr(args, field) for field, _ in SAMPLER_FLAGS.values()}
    values = {k: v for k, v in values.items() if v is not None}
    if args.stop:
        values["stop"] = tuple(args.stop)
    return SamplingSettings(**values)


def _load_engine(args: argparse.Namespace) -> Any:
    if getattr(args, "backend", None):  # `hearth next` has no --backend
        from app.cli.remote import connect_backend

        settings = _settings(args)
        return connect_backend(args), settings
    from app.core.inference.engine import Engine
    from app.core.inference.load_options import LoadOptions
    from app.core.inference.load_probe import checked_options, probe_cache_dir
    from app.core.machine.load_verdicts import LoadVerdicts
    from app.core.models.library import resolve_model

    settings = _settings(args)  # validate flags before the slow load
    paths = open_paths(args)
    options = LoadOptions(
        n_ctx=args.ctx if args.ctx is not None else 4096,
        n_gpu_layers=args.gpu_layers,
        n_threads=args.threads or None,
    )
    path = resolve_model(args.model, paths)
    verdicts = LoadVerdicts(probe_cache_dir(paths.cache))
    options, warnings = checked_options(path, options, verdicts)  # a crash ends a child only
    for warning in warnings:
        print(f"hearth: warning: {warning}", file=sys.stderr)
    engine = Engine()
    loaded = engine.load(path, options)
    if args.plain_template and not loaded.template_is_fallback:
        engine.template = engine.template.fallback()
    elif loaded.template_is_fallback:
        from app.core.inference.prompt import FALLBACK_NOTICE

        print(f"hearth: note: {FALLBACK_NOTICE}", file=sys.stderr)
    return engine, settings


class _Interrupts:
    """Ctrl+C cancels the reply in progress instead of killing the process."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> threading.Event:
        self.cancel = threading.Event()
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self.cancel

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        self.cancel.set()

    def __exit__(self, *_exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _reply(
    engine: Any, messages: list[Any], settings: Any, args: argparse.Namespace, out: TextIO
) -> str:
    """Stream one reply to `out`; return its text."""
    from app.core.inference.events import GenerationDone, PrefillStarted, TokenEvent
    from app.core.inference.prompt import OverflowPolicy
    from app.core.inference.token_data import TOP_N, record_from_event, to_openai, token_data

    default = "drop-oldest" if args.command == "chat" else "stop"
    policy = (
        OverflowPolicy.DROP_OLDEST
        if (args.overflow or default) == "drop-oldest"
        else OverflowPolicy.STOP
    )
    top_n = args.logprobs if args.logprobs is not None else TOP_N
    records: list[Any] = []
    with _Interrupts() as cancel:
        events: Iterator[Any] = engine.generate(
            messages, settings, cancel=cancel, policy=policy, top_n=top_n
        )
        for event in events:
            if isinstance(event, PrefillStarted) and event.dropped:
                print(
                    "hearth: note: the chat outgrew the context; left out the "
                    f"{len(event.dropped)} oldest message(s)",
                    file=sys.stderr,
                )
            elif isinstance(event, TokenEvent):
                if args.logprobs is not None:
                    records.append(record_from_event(event, engine.token_bytes))
                if event.text:
                    out.write(event.text)
                    out.flush()
            elif isinstance(event, GenerationDone):
                out.write(event.tail + "\n")
                out.flush()
                if event.note:
                    print(f"hearth: warning: {event.note}", file=sys.stderr)
                if args.json:
                    stats = event.stats.to_dict()
                    record = {
                        "reply": event.text,
                        **{k: stats[k] for k in JSON_KEYS if k != "reply"},
                    }
                    if args.logprobs is not None:
                        record["logprobs"] = {
                            "content": to_openai(token_data(records, top_n))["content"]
                        }
                    out.write(json.dumps(record) + "\n")
                elif args.logprobs is not None:
                    out.write(logprob_table(records))
                out.flush()
                return str(event.text)
    return ""


def _clean_arguments(args: argparse.Namespace, cleaner: TextCleaner) -> None:
    """Make the text flags valid Unicode (before anything is loaded)."""
    args.prompt = cleaner.clean(getattr(args, "prompt", ""), "the prompt")
    if args.system:
        args.system = cleaner.clean(args.system, "--system")
    args.stop = [cleaner.clean(s, "--stop") for s in args.stop]


def logprob_table(records: Sequence[Any], alternatives: int = 3) -> str:
    """A compact table: each token, its probability and the top `alternatives` rivals."""
    if not records:
        return ""
    shown = [_piece(r.text) for r in records]
    width = min(max(len("token"), *(len(t) for t in shown)), 24)
    rivals_shown = min(alternatives, max(len(r.top) for r in records))
    lines = [f"{'token':<{width}}  {'prob':>6}  top {rivals_shown}".rstrip()]
    for record, text in zip(records, shown, strict=True):
        rivals = "  ".join(f"{_piece(t.text)} {t.prob:.1%}" for t in record.top[:alternatives])
        lines.append(f"{text[:width]:<{width}}  {record.prob:>6.1%}  {rivals}".rstrip())
    return "\n".join(lines) + "\n"


def _piece(text: str) -> str:
    """A token's text on one line, quoted so spaces show: 'Hello', ' world', '\\n'."""
    return repr(text)


def _ask(args: argparse.Namespace) -> int:
    from app.core.errors import ChatTemplateError
    from app.core.inference.messages import Message
    from app.core.inference.prompt_parts import describe_prompt

    tolerant_output()
    _clean_arguments(args, TextCleaner())
    engine, settings = _load_engine(args)
    try:
        messages = ([Message("system", args.system)] if args.system else []) + [
            Message("user", args.prompt)
        ]
        if args.show_prompt and args.backend:
            print(
                "hearth: note: --show-prompt needs a local model (the server renders the prompt)",
                file=sys.stderr,
            )
        elif args.show_prompt:
            parts = describe_prompt(
                engine.vocabulary,
                messages,
                n_ctx=engine.n_ctx,
                max_tokens=settings.max_tokens,
                template=engine.template,
            )
            print_prompt_parts(parts, sys.stderr)
        _reply(engine, messages, settings, args, sys.stdout)
    except ChatTemplateError as exc:
        print(f"hearth: error: {exc}{_fallback_hint(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


def _fallback_hint(exc: Exception) -> str:
    """How to switch to the plain transcript when the model's template failed."""
    from app.core.errors import ChatTemplateError

    if isinstance(exc, ChatTemplateError) and exc.fallback_helps:
        return " Run again with --plain-template to use it."
    return ""


def _chat(args: argparse.Namespace) -> int:
    from app.core.errors import ChatTemplateError, ContextOverflowError
    from app.core.inference.messages import Message

    tolerant_output()
    cleaner = TextCleaner()
    _clean_arguments(args, cleaner)
    stdin = tolerant_stdin()
    engine, settings = _load_engine(args)
    interactive = stdin.isatty()
    history: list[Message] = [Message("system", args.system)] if args.system else []
    if interactive:
        print(
            "Chatting with the model. Ctrl+C stops a reply; Ctrl+D or /quit leaves.",
            file=sys.stderr,
        )
    try:
        while True:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            line = cleaner.clean(stdin.readline(), "the input")
            if not line or line.strip() in ("/quit", "/exit"):
                return 0
            text = line.rstrip("\n")
            if not text.strip():
                continue
            history.append(Message("user", text))
            try:
                reply = _reply(engine, history, settings, args, sys.stdout)
            except (ContextOverflowError, ChatTemplateError) as exc:
                print(f"hearth: error: {exc}{_fallback_hint(exc)}", file=sys.stderr)
                history.pop()
                continue
            history.append(Message("assistant", reply))
    finally:
        engine.close()


def print_prompt_parts(parts: Any, out: TextIO) -> None:
    """The rendered prompt with its parts and token counts (for `ask --show-prompt`)."""
    names = {"system": "system prompt", "user": "user", "assistant": "assistant"}
    for part in parts.parts:
        name = "template" if part.message is None else names.get(part.kind, part.kind)
        if part.message is not None:
            name += f" (message {part.message + 1})"
        out.write(f"--- {name}: {len(part.tokens):,} tokens\n{part.text}\n")
    out.write(
        f"--- {parts.total:,} prompt tokens ({parts.template_tokens:,} template) + "
        f"{parts.reply_budget:,} for the reply, of {parts.n_ctx:,}\n"
    )
    out.flush()
