"""The GUI-thread garbage collector owns collection while installed."""

from __future__ import annotations

import gc
import threading
from typing import Any

from pytestqt.qtbot import QtBot


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collections_happen_on_the_gui_thread_only(qtbot: QtBot) -> None:
    # The autouse fixture installed the collector: automatic collection is off.
    assert not gc.isenabled()
    threads: list[str] = []

    def record(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.callbacks.append(record)
    try:
        # Allocate cycles on another thread: with automatic collection they would trigger
        # a collection there.
        worker = threading.Thread(
            target=lambda: [_Cycle() for _ in range(5 * gc.get_threshold()[0])], name="w"
        )
        worker.start()
        worker.join()
        threshold = gc.get_threshold()[0]
        qtbot.waitUntil(lambda: gc.get_count()[0] < threshold, timeout=5000)
    finally:
        gc.callbacks.remove(record)
    assert threads, "the timer never collected"
    assert set(threads) == {threading.main_thread().name}
