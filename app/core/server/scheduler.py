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
from typing import TYPE_CHECKING, Protocol

from app.core.errors import ContextOverflowError, HearthError
from app.core.inference.events import GenerationDone, GenerationEvent, TokenEvent
from app.core.inference.prompt import reply_budget
from app.core.server.schemas import MAX_TOP_LOGPROBS, GenerationRequest

if TYPE_CHECKING:  # llama.cpp loads with the first model: the app's window starts without it
    from app.core.inference.batch import BatchDecoder
    from app.core.inference.engine import Engine

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


EngineOpener = Callable[["Engine"], ModelFacts]
"""Loads a model into the engine (on the scheduler thread) and describes it."""


class Scheduler:
    """Owns an `Engine` on its own thread and runs jobs from a bounded queue.

    With `parallel` > 1 it generates that many replies at once in one context
    (`app.core.inference.batch`), one decode per step for all of them.

    Args:
        opener: Loads the model into a fresh engine; runs on the scheduler thread.
        queue_size: Jobs that may wait; more get `QueueFull` (HTTP 503).
        parallel: Replies generated at once.
    """

    def __init__(
        self, opener: EngineOpener, queue_size: int = DEFAULT_QUEUE, parallel: int = 1
    ) -> None:
        self._opener = opener
        self._parallel = max(1, parallel)
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, queue_size))
        self._state = State.LOADING
        self._model: ModelFacts | None = None
        self._error: BaseException | None = None
        self._running: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name="hearth-server-engine")
        self._loaded = threading.Event()
        self._shared: Engine | None = None

    @classmethod
    def sharing(
        cls, engine: Engine, queue_size: int = DEFAULT_QUEUE, parallel: int = 1
    ) -> Scheduler:
        """A scheduler on a model another thread has loaded (the app's inference worker).

        It uses the engine's weights (`model_handle`), vocabulary and chat template, never
        its context: its replies run in a context of their own (`BatchDecoder`), so the
        owner's conversation and KV cache are untouched and the owner keeps generating.
        The owner must stop this scheduler before it unloads or replaces the model.
        """
        scheduler = cls(lambda _engine: describe_loaded(engine), queue_size, parallel)
        scheduler._shared = engine
        return scheduler

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
        return bool(self._running)

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
            for running in self._running.values():
                running.cancel.set()
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
        from app.core.inference.engine import Engine

        shared = self._shared
        engine = shared or Engine()
        try:
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
            if self._parallel > 1 or shared is not None:
                self._serve_batched(engine)
            else:
                self._serve_one_by_one(engine)
        finally:
            self._drain()
            if shared is None:
                engine.close()

    def _serve_one_by_one(self, engine: Engine) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._started(job)
            try:
                self._run(engine, job)
            finally:
                self._ended(job)

    def _serve_batched(self, engine: Engine) -> None:
        from app.core.inference.batch import BatchDecoder

        loaded = engine.loaded
        assert loaded is not None
        decoder = BatchDecoder(
            engine.model_handle,
            engine.vocabulary,
            self._parallel,
            engine.n_ctx,
            loaded.n_threads,
            top_n=MAX_TOP_LOGPROBS,
            like=loaded,
        )
        try:
            while True:
                while decoder.free_slots:
                    try:
                        job = self._queue.get(block=not decoder.active)
                    except queue.Empty:
                        break
                    if job is None:
                        return
                    self._admit(engine, decoder, job)
                try:
                    decoder.step()
                except HearthError as exc:
                    log.error("batched generation failed: %s", exc)
                    self._state = State.FAILED
                    self._error = exc
                    for job in list(self._running.values()):
                        _emit(job, JobFailed(exc))
                        self._ended(job)
                    return
        finally:
            decoder.close()

    def _admit(self, engine: Engine, decoder: BatchDecoder, job: Job) -> None:
        from app.core.inference.batch import BatchJob

        request = job.request
        try:
            if job.cancel.is_set():
                raise NotReady("cancelled")
            tokens, dropped = _prompt(engine, request, job.cancel)
        except (HearthError, NotReady) as exc:
            _emit(job, JobFailed(exc))
            return
        vocab = engine.vocabulary

        def emit(event: GenerationEvent) -> None:
            if isinstance(event, TokenEvent):
                _emit(job, TokenPiece(event, vocab.token_bytes(event.token_id)))
                return
            _emit(job, event)
            if isinstance(event, GenerationDone):
                self._ended(job)

        self._started(job)
        try:
            decoder.admit(
                BatchJob(
                    tokens=tokens,
                    settings=request.settings,
                    emit=emit,
                    cancel=job.cancel,
                    grammar=request.grammar,
                    dropped=dropped,
                    stops=engine.template.extra_stops,
                )
            )
        except HearthError as exc:  # llama.cpp refused the grammar
            self._ended(job)
            _emit(job, JobFailed(exc))

    def _started(self, job: Job) -> None:
        with self._lock:
            self._running[id(job)] = job

    def _ended(self, job: Job) -> None:
        with self._lock:
            self._running.pop(id(job), None)

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
                    request.messages,
                    request.settings,
                    cancel=job.cancel,
                    grammar=request.grammar,
                    top_n=MAX_TOP_LOGPROBS,
                )
            else:
                events = engine.complete(
                    request.prompt,
                    request.settings,
                    cancel=job.cancel,
                    grammar=request.grammar,
                    top_n=MAX_TOP_LOGPROBS,
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


def _prompt(
    engine: Engine, request: GenerationRequest, cancel: threading.Event
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The prompt tokens of a request and the messages left out (raises ContextOverflowError)."""
    max_tokens = request.settings.max_tokens
    if request.kind == "chat":
        plan = engine.plan(request.messages, max_tokens, cancel=cancel)
        return plan.tokens, plan.dropped
    tokens = engine.tokenize_prompt(request.prompt)
    budget = reply_budget(max_tokens, engine.n_ctx)
    if not tokens or len(tokens) + budget > engine.n_ctx:
        raise ContextOverflowError(
            f"The prompt needs {len(tokens):,} tokens plus {budget:,} for the reply, but "
            f"the context holds {engine.n_ctx:,}. Shorten it or lower max tokens.",
            needed=len(tokens) + budget,
            limit=engine.n_ctx,
        )
    return tuple(tokens), ()


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
