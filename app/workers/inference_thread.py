"""What the GUI holds of the inference worker: `InferenceThread` creates the worker's
thread, moves the worker there, sends requests as queued signals (cancels as direct calls),
and stops everything in order (cancel, stop the engine host on its thread, quit and join
the thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.core.inference.load_options import LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.messages import Message
from app.core.inference.prompt import OverflowPolicy
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TOP_N
from app.core.machine.load_verdicts import LoadVerdicts
from app.core.server.config import ServerConfig
from app.workers.inference import GpuStandIn, InferenceWorker
from app.workers.thread_host import WorkerHost

if TYPE_CHECKING:
    from app.core.inference.remote_http import Endpoint


class InferenceThread(WorkerHost):
    """Runs an `InferenceWorker` on its own `QThread` and stops it in order.

    Create it on the GUI thread, connect to `worker`'s signals (with `@Slot` methods of
    QObjects: PYSIDE-3124), then `start()`. Requests go out as queued signals; cancels
    are direct calls. `stop()` must run before the application exits.
    """

    _loadRequested = Signal(str, object)
    _generateRequested = Signal(int, object, object, int, object)
    _unloadRequested = Signal()
    _exploreRequested = Signal(int, object, object)
    _cacheRequested = Signal()
    _remoteRequested = Signal(object, str)
    _plainRequested = Signal()

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        flush_interval_s: float | None = None,
        overflow_policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        check_memory: bool = True,
        model_settings: LoadOptionsStore | None = None,
        gpu_stand_in: GpuStandIn | None = None,
        verdicts: LoadVerdicts | None = None,
    ) -> None:
        worker = InferenceWorker(
            flush_interval_s=flush_interval_s,
            overflow_policy=overflow_policy,
            check_memory=check_memory,
            model_settings=model_settings,
            gpu_stand_in=gpu_stand_in,
            verdicts=verdicts,
        )
        super().__init__(worker, parent)
        self.worker = worker
        self._loadRequested.connect(worker.load)
        self._generateRequested.connect(worker.generate)
        self._unloadRequested.connect(worker.unload)
        self._exploreRequested.connect(worker.explore)
        self._cacheRequested.connect(worker.report_cache)
        self._remoteRequested.connect(worker.use_remote)
        self._plainRequested.connect(worker.use_plain_transcript)

    def load(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Queue loading a model (None: its saved options); watch `worker.offloadOutcome`,
        `loaded` / `loadFailed` / `loadCancelled`."""
        if not self.is_running:
            return
        self.worker.expect_load()
        self._loadRequested.emit(str(path), options)

    def generate(
        self,
        request_id: int,
        messages: Sequence[Message],
        settings: SettingsHolder | SamplingSettings | None = None,
        top_n: int = TOP_N,
        continue_with: Sequence[int] = (),
    ) -> None:
        """Queue a reply to a snapshot of `messages`; events carry `request_id`.

        `top_n` (0 to 20): alternatives kept per token in the `tokens` records.
        `continue_with`: token ids the reply starts with (a branch); generation goes on
        after them and the events cover only what follows.
        """
        if not self.is_running:
            return
        self._generateRequested.emit(
            request_id, tuple(messages), settings, top_n, tuple(continue_with)
        )

    def explore(
        self, request_id: int, messages: Sequence[Message], continue_with: Sequence[int] = ()
    ) -> None:
        """Queue computing the next token's logits after `messages` (+ `continue_with`);
        answers with `worker.explored` / `worker.exploreFailed`; `cancel(request_id)`
        stops it."""
        if self.is_running:
            self._exploreRequested.emit(request_id, tuple(messages), tuple(continue_with))

    def report_cache(self) -> None:
        """Queue a `worker.cacheReported` with the KV cache's tokens."""
        if self.is_running:
            self._cacheRequested.emit()

    def use_remote(self, endpoint: Endpoint, model: str = "") -> None:
        """Queue making a server's model the chat's model; watch `worker.remoteConnected`
        / `remoteFailed`. "" picks the server's first model."""
        if self.is_running:
            self._remoteRequested.emit(endpoint, model)

    def use_plain_transcript(self) -> None:
        """Queue replacing the model's chat template with the plain transcript format;
        watch `worker.templateChanged`."""
        if self.is_running:
            self._plainRequested.emit()

    def serve(self, config: ServerConfig, parallel: int = 2) -> None:
        """Start the API server on the loaded model (thread-safe, not queued: it does not
        wait for a reply in progress); watch `worker.serving` / `serveFailed`."""
        if self.is_running:
            self.worker.serve(config, parallel)

    def unserve(self) -> None:
        """Stop the API server (thread-safe); watch `worker.serveStopped`."""
        self.worker.unserve()

    def unload(self) -> None:
        """Queue freeing the model."""
        if self.is_running:
            self._unloadRequested.emit()

    def cancel(self, request_id: int) -> None:
        """Stop reply `request_id` now (thread-safe, not queued)."""
        self.worker.cancel(request_id)

    def cancel_load(self) -> None:
        """Stop the model load in progress or queued (thread-safe, not queued)."""
        self.worker.cancel_load()

    def before_stop(self) -> None:
        """Cancel every load and reply and turn away queued requests."""
        self.worker.cancel_all()
