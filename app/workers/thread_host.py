"""A long-lived worker on a QThread of its own, and the GUI-side host that starts and stops it.

`ThreadWorker` subclasses free their resources in `release()`, which runs on the worker's
thread from the `shutdown` slot; the worker then hands itself back to the GUI thread and
ends its thread. `WorkerHost` subclasses create the worker, call `super().__init__` with
it, connect their request signals, and override `before_stop()` to cancel work in flight.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)


class ThreadWorker(QObject):
    """A QObject that serves queued requests on its own thread until `shutdown`."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name
        self._home_thread = QThread.currentThread()
        self._closed = False

    @property
    def is_closed(self) -> bool:
        """True once `shutdown` ran; later requests are refused."""
        return self._closed

    @Slot()
    def name_thread(self) -> None:
        """Give the worker's thread a readable name in Python (log lines show it)."""
        threading.current_thread().name = self.thread_name

    @Slot()
    def shutdown(self) -> None:
        """Release resources on this thread, hand this object back, and end the thread."""
        thread = QThread.currentThread()
        try:
            self._closed = True
            self.release()
        except Exception:
            log.exception("unexpected error releasing %s", self.thread_name)
        finally:
            if thread is not self._home_thread:
                self.moveToThread(self._home_thread)
                thread.quit()

    def release(self) -> None:
        """Free what the worker holds (runs on the worker's thread). Override."""


class WorkerHost(QObject):
    """Runs a `ThreadWorker` on its own `QThread` and stops it in order."""

    _shutdownRequested = Signal()

    def __init__(self, worker: ThreadWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.qthread = QThread()
        self.qthread.setObjectName(worker.thread_name)
        worker.moveToThread(self.qthread)
        self.qthread.started.connect(worker.name_thread)
        self._shutdownRequested.connect(worker.shutdown)
        self._thread_name = worker.thread_name
        self._started = False
        self._stopped = False
        self._shutdown_sent = False

    def start(self) -> None:
        """Start the worker's thread (once)."""
        if self._started:
            return
        self._started = True
        self.qthread.start()

    @property
    def is_running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._started and not self._stopped

    def before_stop(self) -> None:
        """Cancel or invalidate work in flight before the shutdown request. Override."""

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Cancel work, release the worker's resources on its thread, quit and join it.

        Idempotent. Returns False if the thread did not end within `timeout_ms` (it is
        left running and logged; the caller decides what to do).
        """
        if not self._started:
            self._stopped = True
            return True
        self._stopped = True
        self.before_stop()
        if not self._shutdown_sent:
            self._shutdown_sent = True
            self._shutdownRequested.emit()
        if not self.qthread.wait(timeout_ms):
            log.error("the %s thread did not stop within %d ms", self._thread_name, timeout_ms)
            return False
        return True
