"""One-shot jobs off the GUI thread: run a function on a thread of its own, deliver its
result or failure on the thread that started it.

For work that is short but not reliably instant (the machine report runs `nvidia-smi`;
a model header is read from disk): the GUI never waits for it. A `HearthError` becomes its
message; any other exception is logged and reported with the log's path.

Long work (a download, a quantization) uses `BackgroundJob.with_progress`: the function gets
a `report(object)` callable whose values arrive as `progress` signals on the GUI thread.
Cancelling is the function's business (a thread-safe control object the caller keeps).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import HearthError
from app.core.logs import unexpected_error_message

log = logging.getLogger(__name__)

_unfinished: list[BackgroundJob] = []
"""Jobs whose thread outlived `wait`: kept referenced, so Qt never destroys a running
thread (that aborts the process)."""


class _Runner(QObject):
    """Calls the function on the job's thread, then ends the thread."""

    done = Signal(object)
    error = Signal(str)
    progress = Signal(object)

    def __init__(self, function: Callable[..., Any], name: str, *, reports: bool) -> None:
        super().__init__()
        self._function = function
        self._name = name
        self._reports = reports

    @Slot()
    def run(self) -> None:
        thread = QThread.currentThread()
        threading.current_thread().name = self._name
        try:
            result = self._function(self.progress.emit) if self._reports else self._function()
        except HearthError as exc:
            log.warning("%s failed: %s", self._name, exc)
            self.error.emit(exc.message)
        except Exception as exc:
            log.exception("unexpected error in %s", self._name)
            self.error.emit(unexpected_error_message(exc))
        else:
            self.done.emit(result)
        finally:
            # No moveToThread back home: from this thread, holding the GIL, it waits for
            # Qt's signal-slot locks, which the GUI thread may hold while it waits for the
            # GIL (destroying a widget tree): a deadlock seen in a test run. The thread has
            # ended by the time the job (and this object) is deleted on the GUI thread, so
            # nothing here is processing events then.
            thread.quit()


class BackgroundJob(QObject):
    """Runs `function()` once on its own `QThread`.

    Create and `start()` it on the GUI thread; connect `succeeded` / `failed` (to `@Slot`
    methods). The owner must `wait()` for unfinished jobs before the application exits.

    Signals:
        succeeded(object): What the function returned.
        failed(str): Why it did not (a message for a person).
        finished(): The job's thread has ended (after `succeeded` or `failed`).
        progress(object): A value the function reported (jobs made by `with_progress`).
    """

    succeeded = Signal(object)
    failed = Signal(str)
    finished = Signal()
    progress = Signal(object)

    def __init__(
        self,
        function: Callable[..., Any],
        name: str,
        parent: QObject | None = None,
        *,
        reports: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._runner = _Runner(function, name, reports=reports)
        self._runner.progress.connect(self.progress)
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.done.connect(self._on_done)
        self._runner.error.connect(self._on_error)
        self._thread.finished.connect(self._on_thread_finished)
        self._started = False
        self._ended = False

    @classmethod
    def with_progress(
        cls,
        function: Callable[[Callable[[object], None]], Any],
        name: str,
        parent: QObject | None = None,
    ) -> BackgroundJob:
        """A job whose function is called as `function(report)`; each `report(value)`
        arrives as a `progress(value)` signal on the thread that made the job."""
        return cls(function, name, parent, reports=True)

    def start(self) -> None:
        """Start the job (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def is_running(self) -> bool:
        """Started and its thread not yet ended."""
        return self._started and not self._thread.isFinished()

    def wait(self, timeout_ms: int) -> bool:
        """Wait for the thread to end; False (and the job kept alive) if it did not."""
        if not self._started or self._thread.wait(timeout_ms):
            return True
        log.error("%s did not end within %d ms", self.objectName(), timeout_ms)
        _unfinished.append(self)
        return False

    @Slot(object)
    def _on_done(self, result: object) -> None:
        self.succeeded.emit(result)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.failed.emit(message)

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._thread.wait()
        self.finished.emit()


class JobSet(QObject):
    """The background jobs of one owner: started here, kept referenced until they end,
    waited for at shutdown."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[BackgroundJob] = []

    def start(self, function: Callable[[], Any], name: str) -> BackgroundJob:
        """Start `function()` on a job of its own; connect to the returned job's signals."""
        job = BackgroundJob(function, name, self)
        job.finished.connect(self._on_finished)
        self._jobs.append(job)
        job.start()
        return job

    def __len__(self) -> int:
        return len(self._jobs)

    def wait(self, timeout_ms: int) -> bool:
        """Wait for every running job; False if one did not end in time."""
        return all([job.wait(timeout_ms) for job in list(self._jobs)])

    @Slot()
    def _on_finished(self) -> None:
        job = self.sender()
        if isinstance(job, BackgroundJob) and job in self._jobs:
            self._jobs.remove(job)
            job.deleteLater()
