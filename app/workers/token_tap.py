"""The GUI thread's end of the engine host's token tap: a local reply's tokens without a
hop through the inference worker's thread.

A local reply's token batches come from the engine host on a pipe of their own (see
`EngineHost`'s `on_tap`). A `QSocketNotifier` on the GUI thread reads each batch as it
lands and hands it on as the worker's `tokens` signal, emitted here on the GUI thread, so
the slots there run at once. Each batch then wakes one thread of the app instead of two
(the worker's, to read and re-emit it, then the GUI's), and the worker wakes only for a
reply's start and end: on a machine whose cores llama.cpp's threads fill, every wake-up
takes a core from them.

Order: the host puts all of a reply's batches in the tap before its end goes back to the
worker, and `InferenceThread` connects `drain` to the worker's `finished` and `failed`
before anyone else does, so every token reaches the app before the reply's end.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from multiprocessing.connection import Connection

from PySide6.QtCore import QObject, QSocketNotifier, Signal, Slot

TokensOut = Callable[[int, str, object], None]
"""Where batches go: (request id, their text, their records), like `InferenceWorker.tokens`."""


class _Reader:
    """One host's tap: its connection, a poll object on it, and its notifier."""

    def __init__(self, conn: Connection, notifier: QSocketNotifier) -> None:
        self.conn = conn
        self.notifier = notifier
        self.poller = select.poll()  # `Connection.poll` builds a selector per call
        self.poller.register(conn.fileno(), select.POLLIN)

    def close(self) -> None:
        self.notifier.setEnabled(False)
        self.notifier.deleteLater()
        self.conn.close()


class TokenTap(QObject):
    """Reads engine hosts' token taps on the thread it lives on (create it on the GUI
    thread) and hands each batch to `out`."""

    _handed = Signal(object)

    def __init__(self, out: TokensOut, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._out = out
        self._readers: list[_Reader] = []
        self._closed = False
        self._handed.connect(self._take)  # queued when handed over from another thread

    def hand_over(self, conn: Connection) -> None:
        """Take a new host's tap (from any thread: it is read on this object's thread)."""
        self._handed.emit(conn)

    @Slot(object)
    def _take(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        notifier = QSocketNotifier(conn.fileno(), QSocketNotifier.Type.Read, self)
        notifier.activated.connect(self.drain)
        self._readers.append(_Reader(conn, notifier))

    @Slot()
    def drain(self) -> None:
        """Hand on every batch waiting in the taps, oldest host first; close the taps
        whose host has ended."""
        for reader in list(self._readers):
            try:
                while reader.poller.poll(0):
                    tag, batch = reader.conn.recv()
                    self._out(tag, batch.text, batch.records)
            except (EOFError, OSError):  # the host ended and its tap is empty
                self._readers.remove(reader)
                reader.close()

    @property
    def open_taps(self) -> int:
        """How many hosts' taps are open (diagnostics, tests)."""
        return len(self._readers)

    def close(self) -> None:
        """Close every tap (after the worker stopped); taps handed over later are closed
        on arrival."""
        self._closed = True
        for reader in self._readers:
            with contextlib.suppress(OSError):
                reader.close()
        self._readers.clear()
