"""The inference worker: one engine host driven from its own thread by queued signals.

`InferenceWorker` owns an `EngineHost` (the `Engine` in a child process, so a llama.cpp
abort or segfault ends that child, never the app) and only drives it from its thread.
Requests arrive as queued calls to its slots; results leave as signals. Cancelling is the
exception: the GUI calls `cancel()` / `cancel_load()` directly (they only set a
`threading.Event`), since a queued cancel would wait behind the very generation it should
stop. The GUI holds it through `InferenceThread` (`inference_thread.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QThread, Signal, Slot

from app.core.errors import EngineCrashedError, HearthError, LoadCancelled
from app.core.host.engine_host import EngineHost, Notice
from app.core.host.protocol import TokenBatch
from app.core.inference.events import GenerationDone, PrefillProgress, PrefillStarted, TokenEvent
from app.core.inference.gpu_fallback import Loader, load_with_fallback
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.load_probe import checked_options
from app.core.inference.messages import Message
from app.core.inference.prompt import OverflowPolicy
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TOP_N, TokenRecord, record_from_event
from app.core.logs import unexpected_error_message
from app.core.machine.hardware import spare_core
from app.core.machine.load_verdicts import LoadVerdict, LoadVerdicts, file_key
from app.core.server.config import ServerConfig
from app.workers.thread_host import ThreadWorker

if TYPE_CHECKING:  # httpx loads when a server's model is first used, not at start-up
    from app.core.inference.remote import RemoteBackend

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_S = 0.04
"""Streamed text leaves the worker at most this often (plus a final flush)."""
BUSY_FLUSH_INTERVAL_S = 0.08
"""The same while llama.cpp's threads take every core: each refresh of the window (its
layout and paint, about 1.5 ms of CPU) is then taken from the decode, so it refreshes
12 times a second instead of 25 (measured: `python -m tests.bench.gui_path`)."""

_PROGRESS_STEP = 0.01


LoaderFactory = Callable[[EngineHost, Callable[[float], None], threading.Event, bool], Loader]
"""Makes the loader for one load from the worker's engine, the progress callback, the
load's cancel event and whether to check memory."""


@dataclass(frozen=True)
class GpuStandIn:
    """Stand-ins for what `load_with_fallback` asks of llama.cpp, so tests can simulate a
    GPU on a CPU-only build: the loader (made per load), the GPUs' free bytes, and whether
    the build can offload. None keeps the real one."""

    make_loader: LoaderFactory | None = None
    devices_free: tuple[int, ...] | None = None
    offload_supported: bool | None = None


class InferenceWorker(ThreadWorker):
    """Owns one `EngineHost` on the thread it was moved to; loads models, streams replies.

    Slots (call through queued signals, see `InferenceThread`): `load`, `generate`,
    `explore`, `report_cache`, `use_plain_transcript`, `unload`, `shutdown`. Thread-safe
    plain methods:
    `cancel`, `cancel_load`, `cancel_all`, `expect_load`.

    Request ids must increase: a generation drops the cancel events of lower ids.

    Models load through `load_with_fallback`: as many layers on the GPU as fit, retried
    with fewer when the GPU runs out of memory. A load without options uses the model's
    saved options (`model_settings`), else the defaults.

    Signals:
        loadWarning(str): Something wrong with the model that loads anyway (outputs that
            are NaN: damaged weights); sent before `loaded`.
        loadProgress(float): Fraction of the model loaded, 0 to 1 (in steps of ~1%; it
            starts again from 0 when a load is retried with fewer GPU layers).
        offloadOutcome(object): The `OffloadOutcome` of a load: where the layers went and
            a sentence saying so (what was retried). Sent just before `loaded`.
        loaded(object): The `LoadedModel` now in use.
        loadFailed(str): Why the model could not be loaded (a message for a person).
        loadCancelled(): A load was cancelled; no model is loaded.
        unloaded(): The engine no longer has a model (unload, or a load that failed after
            freeing the previous model).
        prefillStarted(int, object): Request id and its `PrefillStarted`.
        prefillProgress(int, int, int): Request id, prompt tokens read, tokens to read.
        tokens(int, str, object): Request id, new reply text and a tuple of the
            `TokenRecord`s of its tokens, in order (id, bytes, logprob, the top-N
            alternatives asked for with `top_n`, settings in force). The text may be empty
            (half a UTF-8 character). Coalesced: at most one signal per flush interval,
            plus a final one; one signal, so one event for the GUI thread per refresh.
        finished(int, object): Request id and its `GenerationDone` (cancelled ones too).
            Its `tail` is the only text no `tokens` signal carried.
        failed(int, str): Request id and why no reply could be made.
        explored(int, object): Request id and its `NextLogits`: a copy of the logits row
            for the token after the prompt (+ the reply start asked for), for the
            sampling explorer. Cancel it with `cancel(request_id)`.
        exploreFailed(int, str): Request id and why no distribution could be computed
            (no model, cancelled, a template error, the engine busy).
        cacheReported(object): The tokens in the KV cache now (a tuple of ids).
        remoteConnected(object): A `RemoteBackend` is now the chat's model (its `model`,
            `endpoint`, `capabilities` and `n_ctx` may be read; drive it only here).
        remoteFailed(str): Why the remote model could not be used.
        templateChanged(str): The model's chat template was replaced (a sentence saying so).
        serving(str): The API server listens at this URL (see `serve`).
        serveFailed(str): Why the API server could not start.
        served(int): Requests the API server has answered since it started.
        serveStopped(): The API server stopped (asked to, or its model went away).
        engineStopped(str): The engine host ended while nothing was asked of it (killed,
            out of memory): why, as a message; `unloaded` follows.

    A llama.cpp crash in the host (`EngineCrashedError`) is reported like any failure of
    the request it ended (`loadFailed`, `failed`, `exploreFailed`), then `unloaded`: the
    model is gone and the next load starts a fresh host.

    With a remote model chosen (`use_remote`), `generate` streams from it and `explore`
    answers that the server cannot give a full distribution; `unload` or a local `load`
    ends it.
    """

    loadProgress = Signal(float)
    loadWarning = Signal(str)
    offloadOutcome = Signal(object)
    loaded = Signal(object)
    loadFailed = Signal(str)
    loadCancelled = Signal()
    unloaded = Signal()
    prefillStarted = Signal(int, object)
    prefillProgress = Signal(int, int, int)
    tokens = Signal(int, str, object)
    finished = Signal(int, object)
    failed = Signal(int, str)
    explored = Signal(int, object)
    exploreFailed = Signal(int, str)
    cacheReported = Signal(object)
    remoteConnected = Signal(object)
    remoteFailed = Signal(str)
    templateChanged = Signal(str)
    serving = Signal(str)
    serveFailed = Signal(str)
    served = Signal(int)
    serveStopped = Signal()
    engineStopped = Signal(str)
    _hostEnded = Signal()

    def __init__(
        self,
        *,
        flush_interval_s: float | None = None,
        overflow_policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        check_memory: bool = True,
        model_settings: LoadOptionsStore | None = None,
        gpu_stand_in: GpuStandIn | None = None,
        verdicts: LoadVerdicts | None = None,
    ) -> None:
        super().__init__("hearth-inference")
        self._flush_interval_s = flush_interval_s
        self._policy = overflow_policy
        self._check_memory = check_memory
        self._model_settings = model_settings
        self._gpu = gpu_stand_in or GpuStandIn()
        self._verdicts = verdicts
        self._engine: EngineHost | None = None
        self._remote: RemoteBackend | None = None
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}
        # One cancel event per load: those announced by `expect_load` wait here in order,
        # the running one is `_load_cancel`. A load's event is its own, so a cancel never
        # reaches a load announced after it, however the threads interleave.
        self._announced: deque[threading.Event] = deque()
        self._load_cancel: threading.Event | None = None
        self._stopping = False
        self._hostEnded.connect(self._check_host)  # queued: from the host's reader thread

    # ----- thread-safe controls (direct calls from any thread) -----

    def cancel(self, request_id: int) -> None:
        """Stop reply `request_id`, whether it is running or still queued."""
        with self._lock:
            self._cancels.setdefault(request_id, threading.Event()).set()
        self._wake_engine()

    def expect_load(self) -> None:
        """Note that a load request is on its way, so `cancel_load` can reach it early
        (each `load` slot takes the oldest announcement as its own)."""
        with self._lock:
            event = threading.Event()
            if self._stopping:
                event.set()
            self._announced.append(event)

    def cancel_load(self) -> None:
        """Stop the load in progress and every load announced with `expect_load`."""
        with self._lock:
            self._cancel_loads()
        self._wake_engine()

    def cancel_all(self) -> None:
        """Cancel every load and reply, and turn away requests still queued (for shutdown)."""
        with self._lock:
            self._stopping = True
            self._cancel_loads()
            for event in self._cancels.values():
                event.set()
        self._wake_engine()

    def _cancel_loads(self) -> None:
        if self._load_cancel is not None:
            self._load_cancel.set()
        for event in self._announced:
            event.set()

    def _wake_engine(self) -> None:
        """A call waiting on the engine host sees a cancel at once, not at its next look."""
        engine = self._engine
        if engine is not None:
            engine.wake()

    # ----- slots (run on the worker's thread) -----

    @Slot(str, object)
    def load(self, path: str, options: object = None) -> None:
        """Load the GGUF at `path` with `LoadOptions`, replacing any model.

        None: the model's saved options, else the defaults.
        """
        with self._lock:
            cancel = self._announced.popleft() if self._announced else threading.Event()
            if self._stopping:
                cancel.set()
            self._load_cancel = cancel
        try:
            self._load(path, options if isinstance(options, LoadOptions) else None, cancel)
        finally:
            with self._lock:
                self._load_cancel = None

    def _load(self, path: str, options: LoadOptions | None, cancel: threading.Event) -> None:
        if self._closed:
            self.loadFailed.emit("Hearth is shutting down; the model was not loaded.")
            return
        self._drop_remote()
        engine = self._engine_here()
        had_model = engine.loaded is not None
        last = [-1.0]

        def report(fraction: float) -> None:
            # a retry with fewer GPU layers starts again from 0
            if fraction >= 1.0 or abs(fraction - last[0]) >= _PROGRESS_STEP:
                last[0] = fraction
                self.loadProgress.emit(fraction)

        try:
            if cancel.is_set():
                raise LoadCancelled(f"Loading {Path(path).name} was cancelled.", path=path)
            if options is None and self._model_settings is not None:
                options = self._model_settings.get(path)
            warnings: list[str] = []
            if self._verdicts is not None:
                options, warnings = checked_options(path, options or LoadOptions(), self._verdicts)
            make_loader, gpu = self._gpu.make_loader, self._gpu
            outcome = load_with_fallback(
                engine,
                path,
                options,
                loader=make_loader(engine, report, cancel, self._check_memory)
                if make_loader is not None
                else None,
                devices_free=gpu.devices_free
                if gpu.devices_free is not None
                else engine.devices_free(),
                offload_supported=gpu.offload_supported
                if gpu.offload_supported is not None
                else engine.offload_supported(),
                progress=report,
                cancel=cancel,
                check_memory=self._check_memory,
            )
        except LoadCancelled:
            log.info("loading %s cancelled", path)
            self._report_unloaded(had_model, engine)
            self.loadCancelled.emit()
        except HearthError as exc:
            log.warning("could not load %s: %s", path, exc)
            if isinstance(exc, EngineCrashedError):
                self._remember_crash(path, options, exc)
                engine.take_crash()  # reported here
            self._report_unloaded(had_model, engine)
            self.loadFailed.emit(exc.message)
        except Exception as exc:
            log.exception("unexpected error loading %s", path)
            self._report_unloaded(had_model, engine)
            self.loadFailed.emit(unexpected_error_message(exc))
        else:
            for warning in warnings:
                self.loadWarning.emit(warning)
            self.offloadOutcome.emit(outcome)
            self.loaded.emit(outcome.loaded)

    def _report_unloaded(self, had_model: bool, engine: EngineHost) -> None:
        if had_model and engine.loaded is None:
            self.unloaded.emit()

    def _remember_crash(
        self, path: str, options: LoadOptions | None, exc: EngineCrashedError
    ) -> None:
        """A file that crashed the host while loading is listed as such by the library."""
        if self._verdicts is None or not Path(path).is_file():
            return
        gpu = (options or LoadOptions()).n_gpu_layers != 0
        try:
            key = file_key(Path(path), self._engine_here().build, gpu)
        except HearthError:  # the host cannot even start: nothing to key the verdict on
            return
        self._verdicts.put(key, LoadVerdict("crashed", exc.reason))

    @Slot(int, object, object, int, object)
    def generate(
        self,
        request_id: int,
        messages: object,
        settings: object = None,
        top_n: int = TOP_N,
        continue_with: object = (),
    ) -> None:
        """Stream the reply to `messages` (a tuple of `Message`) as signals.

        `settings` is a `SettingsHolder` (read at every token, so the GUI can steer the
        reply), a `SamplingSettings`, or None for the defaults. `top_n` (0 to 20) is how
        many alternatives each token's record keeps. `continue_with` (token ids) is the
        start of the reply, already decided: generation goes on after it.
        """
        with self._lock:
            for stale in [rid for rid in self._cancels if rid < request_id]:
                del self._cancels[stale]
            cancel = self._cancels.setdefault(request_id, threading.Event())
            if self._stopping:
                cancel.set()
        chat: tuple[Message, ...] = tuple(messages) if isinstance(messages, Sequence) else ()
        try:
            forced = (
                tuple(int(t) for t in continue_with) if isinstance(continue_with, tuple) else ()
            )
            self._generate(request_id, chat, settings, cancel, top_n, forced)
        finally:
            with self._lock:
                self._cancels.pop(request_id, None)

    def _generate(
        self,
        request_id: int,
        chat: tuple[Message, ...],
        settings: object,
        cancel: threading.Event,
        top_n: int = TOP_N,
        continue_with: tuple[int, ...] = (),
    ) -> None:
        engine: EngineHost | RemoteBackend | None = self._remote or self._engine
        if (
            self._closed
            or engine is None
            or (isinstance(engine, EngineHost) and engine.loaded is None)
        ):
            self.failed.emit(request_id, "No model is loaded. Open a model first.")
            return
        holder: SettingsHolder | SamplingSettings | None = (
            settings if isinstance(settings, SettingsHolder | SamplingSettings) else None
        )
        pending: list[str] = []  # text pieces
        records: list[TokenRecord] = []  # one per token
        pace = self._flush_interval(engine)
        # The engine host batches tokens at the window's pace itself, so its batches are
        # sent on as they come (one wake-up of this thread per refresh); a server's tokens
        # come one by one and are held here for `pace`.
        host_paced = isinstance(engine, EngineHost)
        batching = {"batch_s": pace} if host_paced else {}
        hold = 0.0 if host_paced else pace
        last_flush = float("-inf")  # the first token leaves at once

        def send() -> None:
            self.tokens.emit(request_id, "".join(pending), tuple(records))
            pending.clear()
            records.clear()

        try:
            events = engine.generate(
                chat,
                holder,
                cancel=cancel,
                policy=self._policy,
                top_n=top_n,
                continue_with=continue_with,
                **batching,
            )
            for event in events:
                if isinstance(event, TokenEvent | TokenBatch):
                    pending.append(event.text)
                    if isinstance(event, TokenBatch):
                        records.extend(event.records)
                    else:  # a server's token: its record is made here
                        assert self._remote is not None
                        records.append(record_from_event(event, self._remote.token_bytes))
                    now = time.monotonic()
                    if now - last_flush >= hold:
                        send()
                        last_flush = now
                elif isinstance(event, PrefillProgress):
                    self.prefillProgress.emit(request_id, event.done, event.total)
                elif isinstance(event, PrefillStarted):
                    self.prefillStarted.emit(request_id, event)
                elif isinstance(event, GenerationDone):
                    if pending:
                        send()
                    self.finished.emit(request_id, event)
        except HearthError as exc:
            log.warning("reply %d failed: %s", request_id, exc)
            if pending:  # what was decoded before a crash is shown and kept
                send()
            self.failed.emit(request_id, exc.message)
            self._after_crash(exc)
        except Exception as exc:
            log.exception("unexpected error in reply %d", request_id)
            self.failed.emit(request_id, unexpected_error_message(exc))

    def _flush_interval(self, engine: EngineHost | RemoteBackend) -> float:
        """The interval given at construction; if none was, `BUSY_FLUSH_INTERVAL_S` while
        the local model's threads leave no core free, else `DEFAULT_FLUSH_INTERVAL_S`."""
        if self._flush_interval_s is not None:
            return self._flush_interval_s
        loaded = engine.loaded if isinstance(engine, EngineHost) else None
        if loaded is None or spare_core(loaded.n_threads, loaded.n_gpu_layers):
            return DEFAULT_FLUSH_INTERVAL_S
        return BUSY_FLUSH_INTERVAL_S

    @Slot(int, object, object)
    def explore(self, request_id: int, messages: object, continue_with: object = ()) -> None:
        """Compute the next token's logits after `messages` (+ `continue_with` token ids)
        and send them as `explored`, or `exploreFailed`."""
        with self._lock:
            cancel = self._cancels.setdefault(request_id, threading.Event())
            if self._stopping:
                cancel.set()
        chat = (
            tuple(m for m in messages if isinstance(m, Message))
            if isinstance(messages, Sequence)
            else ()
        )
        forced = tuple(int(t) for t in continue_with) if isinstance(continue_with, tuple) else ()
        engine = self._engine
        try:
            if self._remote is not None:
                self.exploreFailed.emit(
                    request_id,
                    f"The full next-token distribution is not available from this server "
                    f"({self._remote.endpoint.label}).",
                )
                return
            if self._closed or engine is None or engine.loaded is None:
                self.exploreFailed.emit(request_id, "No model is loaded. Open a model first.")
                return
            if cancel.is_set():
                self.exploreFailed.emit(request_id, "Cancelled.")
                return
            result = engine.next_logits(
                chat, continue_with=forced, cancel=cancel, policy=self._policy
            )
        except HearthError as exc:
            self.exploreFailed.emit(request_id, exc.message)
            self._after_crash(exc)
        except Exception as exc:
            log.exception("unexpected error exploring request %d", request_id)
            self.exploreFailed.emit(request_id, unexpected_error_message(exc))
        else:
            self.explored.emit(request_id, result)
        finally:
            with self._lock:
                self._cancels.pop(request_id, None)

    @Slot()
    def report_cache(self) -> None:
        """Send the tokens in the KV cache now as `cacheReported` (empty: no model)."""
        engine = self._engine
        cached: tuple[int, ...] = ()
        if engine is not None and engine.loaded is not None and self._remote is None:
            try:
                cached = engine.cached_tokens
            except HearthError as exc:
                self._after_crash(exc)
        self.cacheReported.emit(cached)

    @Slot(object, str)
    def use_remote(self, endpoint: object, model: str) -> None:
        """Make `model` on the server at `endpoint` (an `Endpoint`) the chat's model: list
        the server's models, check `model` is one, probe its tokenizer; the local model is
        freed. Sends `remoteConnected` or `remoteFailed`."""
        from app.core.inference.remote import RemoteBackend
        from app.core.inference.remote_http import Endpoint

        if self._closed or not isinstance(endpoint, Endpoint):
            self.remoteFailed.emit("Hearth is shutting down; the server was not connected.")
            return
        try:
            backend = RemoteBackend(endpoint, model or None)
        except HearthError as exc:
            log.warning("could not use %s: %s", endpoint.base_url, exc)
            self.remoteFailed.emit(exc.message)
            return
        except Exception as exc:
            log.exception("unexpected error connecting to %s", endpoint.base_url)
            self.remoteFailed.emit(unexpected_error_message(exc))
            return
        self._drop_remote()
        self._remote = backend
        if self._engine is not None and self._engine.loaded is not None:
            try:
                self._engine.close()
            except HearthError as exc:
                log.warning("closing the local model: %s", exc)
        self.remoteConnected.emit(backend)

    def _drop_remote(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    @Slot()
    def unload(self) -> None:
        """Free the model and its context (or leave the remote model)."""
        if self._remote is not None:
            self._drop_remote()
            self.unloaded.emit()
            return
        engine = self._engine
        if engine is None or engine.loaded is None:
            return
        try:
            engine.close()
        except HearthError as exc:
            log.warning("unloading the model: %s", exc)
        except Exception:
            log.exception("unexpected error unloading the model")
        self.unloaded.emit()

    @Slot()
    def use_plain_transcript(self) -> None:
        """Format chats as a plain 'User:/Assistant:' transcript instead of the local
        model's chat template (the way out of a template that fails), until the model is
        loaded again; sends `templateChanged`. Nothing happens without a local model."""
        engine = self._engine
        if self._remote is not None or engine is None or engine.loaded is None:
            return
        try:
            loaded = engine.use_plain_transcript()
        except HearthError as exc:
            self.templateChanged.emit(exc.message)
            self._after_crash(exc)
            return
        self.templateChanged.emit(
            f"{loaded.info.path.name} now uses a plain 'User:/Assistant:' transcript instead "
            "of its chat template, until it is loaded again."
        )

    def release(self) -> None:
        """Stop the engine host (on this thread, from `shutdown`)."""
        self._drop_remote()
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def _after_crash(self, exc: BaseException) -> None:
        """After `EngineCrashedError` the model is gone: say so."""
        if isinstance(exc, EngineCrashedError):
            if self._engine is not None:
                self._engine.take_crash()  # reported with the request it ended
            self.unloaded.emit()

    # ----- the API server (thread-safe) -----

    def serve(self, config: ServerConfig, parallel: int) -> None:
        """Start the API server on the loaded model (in the host, on the model's weights,
        in a context of its own); answers with `serving` or `serveFailed`."""
        engine = self._engine
        if engine is None or self._remote is not None:
            self.serveFailed.emit("Load a model first: the API serves the model in use.")
            return
        engine.serve(config, parallel)

    def unserve(self) -> None:
        """Stop the API server; answers with `serveStopped`."""
        engine = self._engine
        if engine is None:
            self.serveStopped.emit()
            return
        engine.unserve()

    def _on_notice(self, notice: Notice) -> None:  # on the host's reader thread
        kind = notice[0]
        if kind == "serving":
            self.serving.emit(str(notice[1]))
        elif kind == "serve_failed":
            self.serveFailed.emit(str(notice[1]))
        elif kind == "served":
            self.served.emit(int(notice[1]))
        elif kind == "unserved":
            self.serveStopped.emit()
        elif kind == "ended":
            self.serveStopped.emit()
            self._hostEnded.emit()

    @Slot()
    def _check_host(self) -> None:
        """The host's pipes closed: report a crash no request reported (it died idle, or
        in a helper's call such as a KV snapshot)."""
        engine = self._engine
        if engine is None or self._closed:
            return
        engine.check_alive()
        crash = engine.take_crash()
        if crash is not None:
            self.engineStopped.emit(crash.message)
            self.unloaded.emit()

    # ----- helpers -----

    @property
    def engine(self) -> EngineHost | None:
        """The engine host, for helpers that live on this worker's thread only (KV
        snapshots). Never drive it from another thread."""
        if QThread.currentThread() is not self.thread():
            raise RuntimeError("InferenceWorker.engine used off the worker's thread")
        return self._engine

    @property
    def host_pid(self) -> int | None:
        """The engine host's process id, or None while there is none (diagnostics)."""
        engine = self._engine
        return engine.pid if engine is not None else None

    def _engine_here(self) -> EngineHost:
        if self._engine is None:
            self._engine = EngineHost(on_notice=self._on_notice)
        return self._engine
