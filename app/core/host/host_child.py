"""The engine host's child process: one `Engine` (and the app's API server) on its own.

`host_main` is the entry point (multiprocessing's "spawn" context). The main thread runs
requests one at a time; a sender thread turns the reply's events into batched messages
with their inspector records while the next token decodes (ctypes lets go of the GIL in
`llama_decode`), so nothing but the engine's own loop sits between two decodes. The API
server, when on, runs its threads here too, on the engine's weights, so a crash in an API
reply is also the host's, never the app's. Messages are described in `protocol`.

Only the standard library and `protocol` are imported at module level: the app imports
this module to name the child's entry point without pulling llama.cpp in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from app.core.host.protocol import HostSetup, PackedError, SeqCancel, TokenBatch, pack_error
from app.core.inference.events import TokenEvent
from app.core.llama_child import name_os_thread, quiet_crashes, redirect_stderr

if TYPE_CHECKING:
    from app.core.inference.engine import Engine
    from app.core.server.handle import ServerHandle
    from app.core.server.scheduler import Scheduler

log = logging.getLogger(__name__)

_END = object()
BATCH_S = 0.04
"""After a reply's first token, tokens leave at most this often unless the request says
otherwise: one wake-up of the app per batch rather than per token (the app asks for the
pace at which its window shows text)."""
NO_MODEL_TO_SERVE = "Load a model first: the API serves the model in use."


class _Outbox:
    """Sends on one connection from several threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        # the app may be gone: then there is nobody to tell
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)


class _ForwardLogs(logging.Handler):
    """Hands the host's log records to the app, which writes its one log file."""

    def __init__(self, notices: _Outbox) -> None:
        super().__init__()
        self._notices = notices

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad format string must not end the host
            text = str(record.msg)
        self._notices.send(("log", record.levelno, record.name, text))


def host_main(
    requests: Connection,
    control: Connection,
    notices: Connection,
    cancelled: Any,
    setup: HostSetup,
) -> None:
    """The child's entry point: serve requests until told to stop or the app is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_crashes()
    redirect_stderr(setup.stderr_path)
    outbox = _Outbox(notices)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(outbox)]
    root.setLevel(setup.log_level)
    try:
        _Host(requests, control, outbox, cancelled).run()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip tearing down llama.cpp's backends


class _Sender(threading.Thread):
    """Sends a reply's events in batches, building each token's record on the way."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__(name="hearth-host-sender", daemon=True)
        self._outbox = outbox
        self._queue: queue.Queue[Any] = queue.Queue()
        self._last_batch: float | None = None  # None: the reply's first token is next
        self.batch_s = BATCH_S  # set per reply, before its first token is put
        self._hurry = threading.Event()
        self._failed = False  # the reply in progress ended with an error of the sender's
        self.token_bytes: Any = None

    def put(self, item: Any) -> None:
        self._queue.put(item)
        if not isinstance(item, TokenEvent):
            self._hurry.set()  # the end of a phase leaves at once, with what is held

    def wait_idle(self) -> None:
        self._queue.join()

    def run(self) -> None:
        from app.core.inference.token_data import record_from_event

        name_os_thread("hearth-sender")

        while True:
            if self._last_batch is not None:
                # Mid-stream: sleep until the next batch is due, on an event only the end
                # of a phase sets, so the decode loop's puts of tokens wake no one: one
                # wake-up per batch (each one takes a core from llama.cpp's threads).
                self._hurry.wait(max(0.0, self._last_batch + self.batch_s - time.monotonic()))
            items = [self._queue.get()]  # blocks only if no token came meanwhile
            self._hurry.clear()
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(items, record_from_event)
            finally:  # served even if sending failed, so the host never waits forever
                for _ in items:
                    self._queue.task_done()

    def _send(self, items: list[Any], record_from_event: Any) -> None:
        tokens: list[Any] = []
        for item in items:
            if isinstance(item, TokenEvent):
                if not self._failed:
                    tokens.append(item)
                continue
            self._flush(tokens, record_from_event)
            self._last_batch = None  # a new phase: its first token leaves at once
            if self._failed:  # this reply already ended with an error: drop the rest of it
                self._failed = not (item is _END or isinstance(item, PackedError))
            elif item is _END:
                self._outbox.send(("ok", None))
            elif isinstance(item, PackedError):
                self._outbox.send(("error", item))
            else:
                self._post(("event", item))
        self._flush(tokens, record_from_event)

    def _flush(self, tokens: list[Any], record_from_event: Any) -> None:
        if tokens:
            try:
                records = tuple(record_from_event(e, self.token_bytes) for e in tokens)
                text = "".join(e.text for e in tokens)
                self._post(("event", TokenBatch(text, records)))
            except Exception as exc:
                self._fail(exc)
            tokens.clear()
            self._last_batch = time.monotonic()

    def _post(self, message: tuple[Any, ...]) -> None:
        try:
            self._outbox.send(message)
        except Exception as exc:  # it could not be pickled
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """End the reply in progress with `exc`; the rest of it is dropped, up to its end."""
        log.error("unexpected error sending a reply", exc_info=exc)
        self._failed = True
        self._outbox.send(("error", pack_error(exc)))


class _Host:
    """The child's state: the engine, the reply being steered, the API server."""

    def __init__(
        self, requests: Connection, control: Connection, notices: _Outbox, cancelled: Any
    ) -> None:
        from app.core.inference.engine import Engine

        self.engine: Engine = Engine()
        self.requests = requests
        self.control = control
        self.out = _Outbox(requests)
        self.notices = notices
        self.cancelled = cancelled
        self.live: tuple[int, Any] | None = None
        self.server: tuple[Scheduler, ServerHandle] | None = None
        self.sender = _Sender(self.out)
        self.sender.start()

    def run(self) -> None:
        while True:
            ready = wait([self.requests, self.control])
            if self.control in ready and not self.drain_control():
                return
            if self.requests in ready:
                try:
                    seq, name, args = self.requests.recv()
                except (EOFError, OSError):
                    return
                if name == "shutdown":
                    self.stop_server()
                    return
                self.handle(seq, name, args)

    def handle(self, seq: int, name: str, args: dict[str, Any]) -> None:
        if name == "generate":
            self.generate(seq, **args)
            return
        try:
            if name in ("load", "close"):
                self.stop_server()  # the server never outlives its model
            value = getattr(self, f"do_{name}")(seq, **args)
        except Exception as exc:
            self.log_unexpected(exc, name)
            self.out.send(("error", pack_error(exc)))
        else:
            self.out.send(("ok", value))

    @staticmethod
    def log_unexpected(exc: Exception, name: str) -> None:
        from app.core.errors import HearthError

        if not isinstance(exc, HearthError):
            log.error("unexpected error in the engine host's %s", name, exc_info=exc)

    # ----- requests -----

    def do_facts(self, _seq: int) -> dict[str, Any]:
        from app.core.inference.kv_snapshot import llama_build_tag
        from app.core.machine.hardware import gpu_free_memory, gpu_offload_supported

        offload = gpu_offload_supported()
        return {
            "offload_supported": offload,
            "devices_free": tuple(gpu_free_memory()) if offload else (),
            "build": llama_build_tag(),
            "pid": os.getpid(),
        }

    def do_load(self, seq: int, path: str, options: Any, check_memory: bool) -> Any:
        return self.engine.load(
            path,
            options,
            progress=lambda fraction: self.out.send(("progress", fraction)),
            cancel=SeqCancel(self.cancelled, seq),  # type: ignore[arg-type]
            check_memory=check_memory,
        )

    def do_close(self, _seq: int) -> None:
        self.engine.close()

    def do_next_logits(
        self, seq: int, messages: Any, continue_with: Any, policy: Any, max_tokens: Any
    ) -> Any:
        return self.engine.next_logits(
            messages,
            continue_with=continue_with,
            cancel=SeqCancel(self.cancelled, seq),  # type: ignore[arg-type]
            policy=policy,
            max_tokens=max_tokens,
        )

    def do_plan(self, seq: int, messages: Any, max_tokens: Any, policy: Any) -> Any:
        return self.engine.plan(
            messages,
            max_tokens,
            policy,
            cancel=SeqCancel(self.cancelled, seq),  # type: ignore[arg-type]
        )

    def do_cached_tokens(self, _seq: int) -> tuple[int, ...]:
        return self.engine.cached_tokens if self.engine.loaded is not None else ()

    def do_clear_cache(self, _seq: int) -> None:
        self.engine.clear_cache()

    def do_save_snapshot(self, _seq: int) -> Any:
        return self.engine.save_snapshot()

    def do_restore_snapshot(self, _seq: int, snapshot: Any) -> bool:
        return self.engine.restore_snapshot(snapshot)

    def do_plain_transcript(self, _seq: int) -> Any:
        template = self.engine.template.fallback()
        self.engine.template = template
        loaded = self.engine.loaded
        return replace(loaded, template_is_fallback=True) if loaded is not None else None

    def do_set_token_data_mode(self, _seq: int, mode: Any) -> None:
        self.engine.token_data_mode = mode

    def generate(self, seq: int, **args: Any) -> None:
        from app.core.inference.sampling import SettingsHolder

        holder = SettingsHolder(args.pop("settings"))
        self.sender.batch_s = float(args.pop("batch_s", BATCH_S))
        self.live = (seq, holder)
        try:
            self.sender.token_bytes = self.engine.vocabulary.token_bytes
            events = self.engine.generate(
                cancel=SeqCancel(self.cancelled, seq),  # type: ignore[arg-type]
                settings=holder,
                **args,
            )
            for event in events:
                self.sender.put(event)
                if self.control.poll() and not self.drain_control():
                    break
            self.sender.put(_END)
        except Exception as exc:
            self.log_unexpected(exc, "reply")
            self.sender.put(pack_error(exc))
        finally:
            self.live = None
        self.sender.wait_idle()

    # ----- control -----

    def drain_control(self) -> bool:
        """Apply what the app sent on the control pipe; False when the app is gone."""
        while self.control.poll():
            try:
                message = self.control.recv()
            except (EOFError, OSError):
                return False
            kind = message[0]
            if kind == "settings":
                live = self.live
                if live is not None and live[0] == message[1]:
                    live[1].set(message[2])
            elif kind == "serve":
                self.start_server(message[1], message[2])
            elif kind == "unserve":
                self.stop_server()
        return True

    def start_server(self, config: Any, parallel: int) -> None:
        from app.core.errors import HearthError
        from app.core.server.scheduler import Scheduler

        if self.server is not None:
            self.notices.send(("serving", self.server[1].url))
            return
        if self.engine.loaded is None:
            self.notices.send(("serve_failed", NO_MODEL_TO_SERVE))
            return
        scheduler = Scheduler.sharing(self.engine, parallel=parallel)
        scheduler.start()
        try:
            handle, url = self._listen(scheduler, config)
        except HearthError as exc:
            scheduler.stop()
            self.notices.send(("serve_failed", exc.message))
            return
        self.server = (scheduler, handle)
        self.notices.send(("serving", url))

    def _listen(self, scheduler: Scheduler, config: Any) -> tuple[ServerHandle, str]:
        """Listen on the configured port, or on a free one if another program has it."""
        from app.core.errors import HearthError
        from app.core.server.handle import ServerHandle

        holder: list[ServerHandle] = []

        def served(_record: Any) -> None:
            self.notices.send(("served", holder[0].requests if holder else 0))

        handle = ServerHandle(scheduler, config, on_request=served)
        holder.append(handle)
        try:
            return handle, handle.start()
        except HearthError:
            if config.port == 0:
                raise
            log.info("port %d is taken; serving on a free port", config.port)
            return self._listen(scheduler, replace(config, port=0))

    def stop_server(self) -> None:
        if self.server is None:
            return
        scheduler, handle = self.server
        self.server = None
        scheduler.cancel_all()
        handle.stop()
        scheduler.stop()
        self.notices.send(("unserved",))
