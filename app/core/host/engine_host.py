"""The app's side of the engine host: an `Engine` that lives in a child process.

Why a child process: llama.cpp ends the process it runs in when it fails hard (a
`GGML_ASSERT` abort, a segfault, a GPU out of memory mid-reply), and no header check can
foresee every case. In a child, such a failure ends the child only: `EngineHost` raises
`EngineCrashedError` naming the file, what killed the host and llama.cpp's last line, the
app keeps the conversation and the partial reply, and the next call starts a fresh host.
Ollama, Jan and text-generation-webui run their engines out of process for the same
reason; it also means the decode loop never waits for the GUI thread's GIL.

`EngineHost` answers what the inference worker asks of an `Engine` (load, generate,
next_logits, KV snapshots, the plain-transcript fallback) and is driven from one thread,
like the engine. Three things may come from other threads: cancelling (`cancel`-event
set, read here between messages and forwarded through a shared counter), live settings
(`SettingsHolder.set`, forwarded on the control pipe before the next token), and the API
server switch (`serve` / `unserve`, answered as notices).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.core.errors import EngineCrashedError, EngineStateError
from app.core.host.host_child import BATCH_S, NO_MODEL_TO_SERVE, host_main
from app.core.host.protocol import HostSetup, TokenBatch, unpack_error
from app.core.inference.backend import LOCAL_LLAMA_CPP, Capabilities
from app.core.inference.events import GenerationEvent
from app.core.inference.kv_snapshot import KVSnapshot
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.inference.messages import Message
from app.core.inference.next_logits import NextLogits
from app.core.inference.prompt import OverflowPolicy, PromptPlan
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TOP_N
from app.core.llama_child import crash_reason
from app.core.logs import current_log_file

if TYPE_CHECKING:
    from app.core.server.config import ServerConfig

log = logging.getLogger(__name__)

Notice = tuple[Any, ...]
"""A message from the host that answers no request: see `protocol`."""

_ALIVE_S = 0.5
_POLL_MS = 500
"""How often a waiting call looks at its cancel event, the live settings and whether the
host lives, unwoken: a backstop, since `wake` and a change of the watched `SettingsHolder`
make it look at once and the host's death makes its pipe readable. Each wake-up of the
worker's thread while the GUI thread is busy costs GIL hand-offs with it (waking 100 times
a second cost the app ~60 µs of CPU per streamed token)."""
_SHUTDOWN_S = 5.0
_ABANDON_S = 120.0
"""How long a request the caller walked away from may take to answer its cancel (the
engine looks at it between batches: a long prefill batch of a big model on a CPU takes
seconds) before the host is taken for hung and ended: the caller's thread, which may be
any thread a garbage collection runs on, never waits forever."""


def _close_all(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Cancel(Protocol):
    """What a call may be cancelled with (a `threading.Event`): anything with `is_set`."""

    def is_set(self) -> bool: ...


class EngineHost:
    """An `Engine` in a child process. Not thread-safe except as the module says.

    Args:
        on_notice: Called (on a reader thread) with each notice: the API server's state
            and request count. Log lines from the host go to this process's log.
    """

    capabilities: Capabilities = LOCAL_LLAMA_CPP

    def __init__(self, on_notice: Callable[[Notice], None] | None = None) -> None:
        self.on_notice = on_notice
        self._process: Any = None
        self._reader: threading.Thread | None = None  # reads the host's notices
        self._requests: Any = None
        self._control: Any = None
        self._cancelled: Any = None
        self._stderr: Path | None = None
        self._facts: dict[str, Any] = {}
        self._seq = 0
        self._loaded: LoadedModel | None = None
        self._loading: Path | None = None
        self._cached: tuple[int, ...] | None = None  # the KV cache's tokens, while known
        self._control_lock = threading.Lock()
        self._stopping = False
        self._unreported: EngineCrashedError | None = None
        self._wake_r, self._wake_w = os.pipe()  # `wake` writes; a waiting call polls it
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        weakref.finalize(self, _close_all, self._wake_r, self._wake_w)

    # ----- the child process -----

    @property
    def running(self) -> bool:
        """Whether a host process is up."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The host's process id (None before the first call)."""
        return int(self._process.pid) if self.running else None

    def _start(self) -> None:
        if self.running:
            return
        self._reap()
        context = multiprocessing.get_context("spawn")
        requests, child_requests = context.Pipe(duplex=True)
        control_in, control_out = context.Pipe(duplex=False)
        notices_in, notices_out = context.Pipe(duplex=False)
        fd, stderr_name = tempfile.mkstemp(prefix="hearth-engine-", suffix=".log")
        os.close(fd)
        cancelled = context.RawValue("q", 0)
        setup = HostSetup(stderr_name, logging.getLogger().getEffectiveLevel())
        process = context.Process(
            target=host_main,
            args=(child_requests, control_in, notices_out, cancelled, setup),
            name="hearth-engine-host",
            daemon=True,
        )
        process.start()
        for end in (child_requests, control_in, notices_out):
            end.close()
        self._process, self._requests, self._control = process, requests, control_out
        self._stopping = False
        self._cancelled, self._stderr, self._seq = cancelled, Path(stderr_name), 0
        self._reader = threading.Thread(
            target=self._read_notices, args=(notices_in,), name="hearth-host-notices", daemon=True
        )
        self._reader.start()
        log.info("engine host started (pid %d)", process.pid)
        self._facts = self._call("facts")

    def _read_notices(self, conn: Any) -> None:
        while True:
            try:
                notice = conn.recv()
            except (EOFError, OSError):
                break
            if notice[0] == "log":
                logging.getLogger(f"host.{notice[2]}").log(notice[1], "%s", notice[3])
            else:
                self._notify(notice)
        conn.close()
        if not self._stopping:  # the host ended without being asked: say so
            self._notify(("ended",))

    def shutdown(self) -> None:
        """Stop the host (its model and API server with it). Safe to call twice."""
        process = self._process
        self._stopping = True
        if process is not None and process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._requests.send((self._seq + 1, "shutdown", {}))
            process.join(_SHUTDOWN_S)
            if process.is_alive():
                process.kill()
                process.join()
        self._reap()

    def _reap(self) -> None:
        for conn in (self._requests, self._control):
            if conn is not None:
                conn.close()
        self._requests = self._control = None
        if self._process is not None:
            self._process.join(1.0)
        self._process = None
        self._join_reader()
        self._loaded = None
        self._cached = None
        if self._stderr is not None:
            self._stderr.unlink(missing_ok=True)
            self._stderr = None

    def _join_reader(self) -> None:
        """Wait for the notice reader of a host that has ended (its pipe is at its end).
        It holds this object, and through `on_notice` its owner: a reader that outlived
        them could drop the last reference to a Qt object on its own thread, which Qt
        does not allow (a test run segfaulted while the two threads freed them)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(_SHUTDOWN_S)
            if reader.is_alive():
                log.warning("the engine host's notice reader did not end")

    # ----- one request -----

    def wake(self) -> None:
        """Make the call in progress (if any) look at its cancel event and settings now.
        Safe from any thread."""
        with contextlib.suppress(BlockingIOError, OSError):  # already woken, or closed
            os.write(self._wake_w, b"!")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass

    def _exchange(
        self,
        name: str,
        args: dict[str, Any],
        *,
        cancel: _Cancel | None = None,
        holder: SettingsHolder | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Send one request and yield what comes back up to its answer."""
        self._start()
        if name not in _KEEP_CACHE_KNOWN:
            self._cached = None
        self._seq += 1
        seq = self._seq
        sent = holder.get() if holder is not None else None
        try:
            self._requests.send((seq, name, args))
        except (OSError, ValueError):
            raise self._crashed(name) from None
        answered = False
        # One poll object per request (`Connection.poll` builds a selector per call), on
        # the host's pipe and the wake pipe. The host's death closes its pipe (readable,
        # then EOF); `is_alive` is the backstop, asked twice a second.
        requests = self._requests.fileno()
        poller = select.poll()
        poller.register(requests, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        alive_check = time.monotonic() + _ALIVE_S
        if holder is not None:
            holder.watch(self.wake)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll(_POLL_MS)}
                if self._wake_r in ready:
                    self._drain_wake()
                if requests in ready:
                    try:
                        message = self._requests.recv()
                    except (EOFError, OSError):
                        raise self._crashed(name) from None
                    if message[0] == "error":
                        answered = True
                        raise unpack_error(message[1], _log_name())
                    if message[0] == "ok":
                        answered = True
                    yield message
                    if answered:
                        return
                elif time.monotonic() >= alive_check:
                    if not self._process.is_alive():
                        raise self._crashed(name)
                    alive_check = time.monotonic() + _ALIVE_S
                if cancel is not None and cancel.is_set() and self._cancelled.value < seq:
                    self._cancelled.value = seq
                if holder is not None and holder.get() is not sent:
                    sent = holder.get()
                    self._send_control(("settings", seq, sent))
        finally:
            if holder is not None:
                holder.unwatch(self.wake)
            if not answered and self.running:
                self._abandon(seq)

    def _abandon(self, seq: int) -> None:
        """The caller stopped reading before the answer: cancel the request and read what
        is left of it, so the next request's answers are its own. A host that neither
        answers nor ends within `_ABANDON_S` is ended (its state is unknown)."""
        self._cancelled.value = max(self._cancelled.value, seq)
        deadline = time.monotonic() + _ABANDON_S
        try:
            while time.monotonic() < deadline:
                if not self._requests.poll(_POLL_MS / 1000):
                    if not self._process.is_alive():
                        break
                    continue
                message = self._requests.recv()
                if message[0] in ("ok", "error"):
                    return
            else:
                log.error(
                    "the engine host did not stop a cancelled request within %.0f s; ending it",
                    _ABANDON_S,
                )
                self._process.kill()
        except (EOFError, OSError):
            pass
        self._crashed("idle")  # logs why the host is gone; reported like any crash

    def _call(self, name: str, cancel: _Cancel | None = None, **args: Any) -> Any:
        for message in self._exchange(name, args, cancel=cancel):
            if message[0] == "ok":
                return message[1]
        raise AssertionError("unreachable: an exchange ends with its answer")

    def _send_control(self, message: tuple[Any, ...]) -> bool:
        with self._control_lock:
            if self._control is None:
                return False
            try:
                self._control.send(message)
            except (OSError, ValueError):
                return False
            return True

    def _crashed(self, name: str) -> EngineCrashedError:
        """Why the host is gone, as the error to raise; the host is cleaned up."""
        process = self._process
        if process is not None:
            process.join(2.0)
            if process.is_alive():  # the pipe broke but the process lives on: end it
                process.kill()
                process.join()
        stderr = self._stderr or Path(os.devnull)
        reason = crash_reason(process.exitcode if process is not None else None, [], stderr)
        loaded = self._loaded
        path = loaded.info.path if loaded is not None else self._loading
        file = Path(path).name if path is not None else "the model"
        during = _DOING.get(name, f"working ({name})")
        log.error("the engine host stopped while %s %s: %s", during, file, reason)
        self._reap()
        what = (
            f"The engine running {file} stopped ({reason})"
            if name == "idle"
            else f"llama.cpp stopped while {during} {file}: {reason}"
        )
        self._unreported = EngineCrashedError(
            f"{what}. Hearth is still running and kept your conversation and any reply so "
            "far; load the model again, or try another model, fewer GPU layers or a smaller "
            "context.",
            path=path,
            reason=reason,
            during=during,
        )
        return self._unreported

    # ----- what the worker asks of an engine -----

    @property
    def loaded(self) -> LoadedModel | None:
        """The loaded model, or None (also after the host crashed)."""
        return self._loaded if self.running else None

    @property
    def n_ctx(self) -> int:
        """Context window of the loaded model, in tokens."""
        return self._require().n_ctx

    def _require(self) -> LoadedModel:
        loaded = self.loaded
        if loaded is None:
            raise EngineStateError("No model is loaded. Load a model first.")
        return loaded

    def offload_supported(self) -> bool:
        """Whether the host's llama.cpp can offload layers to a GPU."""
        self._start()
        return bool(self._facts.get("offload_supported"))

    @property
    def build(self) -> str:
        """The host's llama.cpp build tag (for cached load verdicts)."""
        self._start()
        return str(self._facts.get("build", ""))

    def devices_free(self) -> tuple[int, ...]:
        """Free bytes of each GPU, as the host's llama.cpp sees them now."""
        self._start()
        if not self._facts.get("offload_supported"):
            return ()
        return tuple(self._call("facts")["devices_free"])

    def load(
        self,
        path: Path | str,
        options: LoadOptions | None = None,
        *,
        progress: Callable[[float], None] | None = None,
        cancel: _Cancel | None = None,
        check_memory: bool = True,
    ) -> LoadedModel:
        """Load a GGUF in the host, replacing its model; raises as `Engine.load`, or
        `EngineCrashedError` when llama.cpp ended the host."""
        self._loaded = None
        self._loading = Path(path)
        args = {"path": str(path), "options": options, "check_memory": check_memory}
        try:
            for message in self._exchange("load", args, cancel=cancel):
                if message[0] == "progress" and progress is not None:
                    progress(float(message[1]))
                elif message[0] == "ok":
                    self._loaded = message[1]
        finally:
            self._loading = None
        return self._require()

    def close(self) -> None:
        """Free the model (the host stays up for the next load)."""
        if self.running and self._loaded is not None:
            self._loaded = None
            self._call("close")

    def generate(
        self,
        messages: Sequence[Message],
        settings: SettingsHolder | SamplingSettings | None = None,
        *,
        cancel: _Cancel | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        top_n: int = TOP_N,
        continue_with: Sequence[int] = (),
        batch_s: float = BATCH_S,
    ) -> Iterator[GenerationEvent | TokenBatch]:
        """Stream a reply like `Engine.generate`, tokens coming as `TokenBatch`es, after
        the first at most one per `batch_s` seconds.

        A `SettingsHolder` is watched while the reply runs: a change reaches the host
        before its next token.
        """
        self._require()
        holder = settings if isinstance(settings, SettingsHolder) else None
        first = holder.get() if holder is not None else settings
        args = {
            "messages": tuple(messages),
            "settings": first,
            "policy": policy,
            "top_n": top_n,
            "continue_with": tuple(continue_with),
            "batch_s": batch_s,
        }
        for message in self._exchange("generate", args, cancel=cancel, holder=holder):
            if message[0] == "event":
                yield message[1]

    def next_logits(
        self,
        messages: Sequence[Message],
        *,
        continue_with: Sequence[int] = (),
        cancel: _Cancel | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        max_tokens: int | None = None,
    ) -> NextLogits:
        """The next token's logits after `messages`, as `Engine.next_logits`."""
        self._require()
        result: NextLogits = self._call(
            "next_logits",
            cancel,
            messages=tuple(messages),
            continue_with=tuple(continue_with),
            policy=policy,
            max_tokens=max_tokens,
        )
        return result

    def plan(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        *,
        cancel: _Cancel | None = None,
    ) -> PromptPlan:
        """Render, count and fit `messages`, as `Engine.plan`."""
        self._require()
        plan: PromptPlan = self._call(
            "plan", cancel, messages=tuple(messages), max_tokens=max_tokens, policy=policy
        )
        return plan

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens whose keys and values are in the host's cache now (asked of the host
        only after something may have changed them: the explorer asks per keystroke)."""
        if self.loaded is None:
            return ()
        if self._cached is None:
            self._cached = tuple(self._call("cached_tokens"))
        return self._cached

    def clear_cache(self) -> None:
        """Empty the KV cache."""
        self._require()
        self._call("clear_cache")

    def save_snapshot(self) -> KVSnapshot:
        """Serialize the KV cache, as `Engine.save_snapshot`."""
        self._require()
        snapshot: KVSnapshot = self._call("save_snapshot")
        return snapshot

    def restore_snapshot(self, snapshot: KVSnapshot) -> bool:
        """Load a snapshot into the cache, as `Engine.restore_snapshot`."""
        self._require()
        return bool(self._call("restore_snapshot", snapshot=snapshot))

    def use_plain_transcript(self) -> LoadedModel:
        """Replace the model's chat template with the plain transcript format."""
        self._require()
        self._loaded = self._call("plain_transcript")
        return self._require()

    def set_token_data_mode(self, mode: str) -> None:
        """Where the host computes token probabilities ("auto", "inline", "overlap")."""
        self._call("set_token_data_mode", mode=mode)

    # ----- the API server (thread-safe; answers come as notices) -----

    def serve(self, config: ServerConfig, parallel: int) -> None:
        """Start the API server on the host's model; a notice says where or why not."""
        if self.loaded is None or not self._send_control(("serve", config, parallel)):
            self._notify(("serve_failed", NO_MODEL_TO_SERVE))

    def unserve(self) -> None:
        """Stop the API server; a notice confirms."""
        if not self._send_control(("unserve",)):
            self._notify(("unserved",))

    def _notify(self, notice: Notice) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(notice)
            except Exception:
                log.exception("engine host notice handler failed")

    def check_alive(self) -> None:
        """After the host's pipes closed: if it died unasked (killed, out of memory), clean
        up, so that `take_crash` says why."""
        process = self._process
        if process is None or self._stopping:
            return
        process.join(2.0)  # its pipes closed as it exited: it is a moment from the end
        if not process.is_alive():
            self._crashed("idle")

    def take_crash(self) -> EngineCrashedError | None:
        """The last crash not yet reported to the person (then forgotten)."""
        crash, self._unreported = self._unreported, None
        return crash


_KEEP_CACHE_KNOWN = frozenset({"cached_tokens", "save_snapshot", "facts", "set_token_data_mode"})
"""Requests that leave the KV cache as it is."""

_DOING = {
    "load": "loading",
    "generate": "writing a reply with",
    "next_logits": "reading the prompt of",
    "plan": "reading the prompt of",
    "facts": "starting llama.cpp for",
    "close": "unloading",
    "idle": "running",
    "save_snapshot": "saving the KV cache of",
    "restore_snapshot": "restoring the KV cache of",
}


def _log_name() -> str | None:
    path = current_log_file()
    return str(path) if path is not None else None
