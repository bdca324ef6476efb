"""Run Python's cyclic garbage collector on the GUI thread only.

Automatic collection runs on whichever thread happens to allocate, so a Qt object caught in
a reference cycle can be destroyed on a worker thread, which Qt does not allow: the
process can crash ("Fatal Python error: Segmentation fault ... Garbage-collecting" on the
inference thread, seen in a test run). This turns automatic collection off and collects
from a timer on the GUI thread instead, generation by generation with Python's own
thresholds. Reference counting still frees everything that is not in a cycle at once.

A full collection (generation 2) walks every object the app holds: with some 85,000 of
them (the window of `tests.bench.gui_path` after a dozen replies) one took 92 ms of the GUI
thread, a visible stall of a streaming reply. While `busy()` says a reply streams, a due
full collection waits for its end (the younger generations are still collected, and they
catch the garbage a reply makes).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Slot

CHECK_INTERVAL_MS = 500


class GuiThreadGarbageCollector(QObject):
    """Owns collection while installed; `uninstall()` gives it back to Python.

    `busy`: while it returns True, full collections wait (set it once the window exists).
    """

    def __init__(
        self, parent: QObject | None = None, busy: Callable[[], bool] | None = None
    ) -> None:
        super().__init__(parent)
        self.busy: Callable[[], bool] = busy or (lambda: False)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setObjectName("guiGarbageCollector")
        self._timer.timeout.connect(self.check)
        self._timer.start(CHECK_INTERVAL_MS)

    @Slot()
    def check(self) -> None:
        """Collect the oldest generation whose count passed its threshold (a full
        collection only when not `busy`)."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                if generation == 2 and self.busy():
                    continue
                gc.collect(generation)
                return

    def uninstall(self) -> None:
        """Stop the timer, collect once here, and restore automatic collection."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
