"""The generation scheduler: one thread owns the engine and runs queued requests.

Requests share the one loaded model. The scheduler thread loads it, then takes jobs
from a bounded queue and generates them one at a time (the engine is not thread-safe;
only this thread touches it). Each job's events go to its `sink` from this thread; the
HTTP side hands them to its event loop, so a slow reader never blocks generation.
Cancelling a job (client gone) is a `threading.Event` the engine checks between tokens and
inside prefill, so it stops within one token.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from app.core.errors import HearthError
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, GenerationEvent, TokenEvent
from app.core.server.schemas import MAX_TOP_LOGPROBS, GenerationRequest

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 16


class State(str, enum.Enum):
    """Where the scheduler is."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class TokenPiece:
    """A token event with the token's own bytes (for logprobs)."""

    event: TokenEvent
    piece: bytes


@dataclass(frozen=True)
class JobFailed:
    """The job ended with an error before or during generation."""

    error: BaseException


JobOutput = TokenPiece | GenerationEvent | JobFailed
Sink = Callable[[JobOutput], None]


@dataclass
class Job:
    """One request's generation: what to run, where its events go, and its cancel flag."""

    request: GenerationRequest
    sink: Sink
    cancel: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ModelFacts:
    """What the server says about the loaded model."""

    id: str
    aliases: tuple[str, ...]
    n_ctx: int
    created: int


class QueueFull(Exception):
    """Every queue slot is taken."""


class NotReady(Exception):
    """The model is loading, failed to load, or the scheduler stopped."""


class GenerationService(Protocol):
    """What the HTTP server needs from whoever runs generations (the scheduler here; the
    app's inference worker can implement it too)."""

    @property
    def state(self) -> State:
        """Loading, ready, failed or stopped."""
        ...

    @property
    def model(self) -> ModelFacts | None:
        """The loaded model (None until ready)."""
        ...

    def submit(self, job: Job) -> None:
        """Queue a job. Raises QueueFull or NotReady."""
        ...


EngineOpener = Callable[[Engine], ModelFacts]
"""Loads a model into the engine (on the scheduler thread) and describes it."""


class Scheduler:
    """Owns an `Engine` on its own thread and runs jobs from a bounded queue.

    Args:
        opener: Loads the model into a fresh engine; runs on the scheduler thread.
        queue_size: Jobs that may wait; more get `QueueFull` (HTTP 503).
    """

    def __init__(self, opener: EngineOpener, queue_size: int = DEFAULT_QUEUE) -> None:
        self._opener = opener
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, queue_size))
        self._state = State.LOADING
        self._model: ModelFacts | None = None
        self._error: BaseException | None = None
        self._current: Job | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name="hearth-server-engine")
        self._loaded = threading.Event()

    @property
    def state(self) -> State:
        """Loading, ready, failed or stopped."""
        return self._state

    @property
    def model(self) -> ModelFacts | None:
        """The loaded model, once ready."""
        return self._model

    @property
    def busy(self) -> bool:
        """A job is generating now."""
        return self._current is not None

    @property
    def queued(self) -> int:
        """Jobs waiting for their turn."""
        return self._queue.qsize()

    @property
    def load_error(self) -> BaseException | None:
        """Why loading failed (state FAILED)."""
        return self._error

    def start(self) -> None:
        """Start the thread (it loads the model first)."""
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> State:
        """Block until loading ends; return the state."""
        self._loaded.wait(timeout)
        return self._state

    def submit(self, job: Job) -> None:
        """Queue a job. Raises NotReady or QueueFull."""
        if self._state is not State.READY:
            raise NotReady(self._state.value)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None

    def cancel_all(self) -> None:
        """Cancel the running job and every queued one (they end as cancelled)."""
        with self._lock:
            if self._current is not None:
                self._current.cancel.set()
            for job in list(self._queue.queue):
                if job is not None:
                    job.cancel.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel everything, let the thread free the engine, and join it."""
        self.cancel_all()
        if self._thread.is_alive():
            self._state = State.STOPPED
            self._queue.put(None)  # may wait for a slot while the queue drains
            self._thread.join(timeout)
        self._state = State.STOPPED

    # ----- the scheduler thread -----

    def _main(self) -> None:
        engine = Engine()
        try:
            engine.top_n = MAX_TOP_LOGPROBS
            try:
                self._model = self._opener(engine)
            except BaseException as exc:
                log.error("the server could not load its model: %s", exc)
                self._error = exc
                self._state = State.FAILED
                return
            finally:
                self._loaded.set()
            if self._state is State.LOADING:
                self._state = State.READY
            while True:
                job = self._queue.get()
                if job is None:
                    break
                with self._lock:
                    self._current = job
                try:
                    self._run(engine, job)
                finally:
                    with self._lock:
                        self._current = None
        finally:
            self._drain()
            engine.close()

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _emit(job, JobFailed(NotReady("stopped")))

    def _run(self, engine: Engine, job: Job) -> None:
        request = job.request
        try:
            if job.cancel.is_set():
                raise NotReady("cancelled")
            events: Iterator[GenerationEvent]
            if request.kind == "chat":
                events = engine.generate(
                    request.messages, request.settings, cancel=job.cancel, grammar=request.grammar
                )
            else:
                events = engine.complete(
                    request.prompt, request.settings, cancel=job.cancel, grammar=request.grammar
                )
            for event in events:
                if isinstance(event, TokenEvent):
                    _emit(job, TokenPiece(event, engine.token_bytes(event.token_id)))
                else:
                    _emit(job, event)
                    if isinstance(event, GenerationDone):
                        return
        except (HearthError, NotReady) as exc:
            _emit(job, JobFailed(exc))
        except Exception as exc:
            log.exception("generation failed")
            _emit(job, JobFailed(exc))


def describe_loaded(engine: Engine, extra_aliases: tuple[str, ...] = ()) -> ModelFacts:
    """ModelFacts of the engine's loaded model: its id is the file name without .gguf."""
    loaded = engine.loaded
    assert loaded is not None
    path = loaded.info.path
    aliases = tuple(a for a in (loaded.info.name, *extra_aliases) if a)
    try:
        created = int(path.stat().st_mtime)
    except OSError:
        created = 0
    return ModelFacts(id=path.stem, aliases=aliases, n_ctx=loaded.n_ctx, created=created)


def _emit(job: Job, item: JobOutput) -> None:
    """Give a job's sink one output; a broken sink (its loop closed) cancels the job but
    never kills the scheduler thread."""
    try:
        job.sink(item)
    except Exception:
        log.debug("a job's sink failed; cancelling it", exc_info=True)
        job.cancel.set()
