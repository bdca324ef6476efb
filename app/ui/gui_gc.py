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

Most of those objects are the start-up's (modules, classes, the window's widgets: some
66,000 once a model is loaded), alive as long as the app. `settle_soon` collects once after
start-up and freezes what survives (`gc.freeze`): later collections never walk it again,
and a full collection of a fresh window's heap went from 42 ms to 1 ms. Reference counting
still frees frozen objects; only a cycle among them waits for `uninstall`.
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
        self._settle = False  # settle at the next check when not busy
        self._settled = False

    @Slot()
    def settle_soon(self) -> None:
        """At the next check when not `busy`, collect everything and freeze what is left:
        the start-up's objects leave every later collection. Once per install; call it when
        start-up has ended (the first model loaded, or none to load)."""
        self._settle = not self._settled

    @Slot()
    def check(self) -> None:
        """Settle if asked (`settle_soon`), else collect the oldest generation whose count
        passed its threshold (a full collection only when not `busy`)."""
        if self._settle and not self.busy():
            gc.collect()
            gc.freeze()
            self._settle, self._settled = False, True
            return
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                if generation == 2 and self.busy():
                    continue
                gc.collect(generation)
                return

    def uninstall(self) -> None:
        """Stop the timer, unfreeze what `settle_soon` froze, collect once here, and
        restore automatic collection."""
        self._timer.stop()
        if self._settled:
            gc.unfreeze()
        gc.collect()
        if self._was_enabled:
            gc.enable()
