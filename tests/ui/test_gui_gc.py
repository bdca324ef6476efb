"""The GUI-thread garbage collector owns collection while installed, and a full collection
waits while a reply streams."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.ui.gui_gc import GuiThreadGarbageCollector
from tests.ui import test_main_window
from tests.ui.test_main_window import COUNT, LONG, TIMEOUT_MS, MakeWindow, send, wait_reply_done

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


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


@pytest.fixture
def passes() -> Iterator[list[int]]:
    """The generation of each collection Python starts meanwhile."""
    started: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    yield started
    gc.callbacks.remove(record)


def full_collection_due() -> None:
    """Run generation-1 collections until a full one is due by Python's thresholds."""
    while gc.get_count()[2] <= gc.get_threshold()[2]:
        gc.collect(1)


def test_a_due_full_collection_waits_while_busy_then_runs(qapp: object, passes: list[int]) -> None:
    busy = True
    collector = GuiThreadGarbageCollector(busy=lambda: busy)
    try:
        full_collection_due()
        passes.clear()
        collector.check()
        assert 2 not in passes
        assert gc.get_count()[2] > gc.get_threshold()[2]  # still due
        busy = False
        collector.check()
        assert passes[-1] == 2
        assert gc.get_count()[2] <= gc.get_threshold()[2]
    finally:
        collector.uninstall()
        collector.deleteLater()


def test_the_window_is_streaming_from_send_to_the_reply_s_end(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model, settings=LONG)
    assert not window.is_streaming()
    send(qtbot, window, COUNT)
    assert window.is_streaming()
    wait_reply_done(qtbot, window)
    qtbot.waitUntil(lambda: not window.is_streaming(), timeout=TIMEOUT_MS)


def test_settling_freezes_what_is_alive_at_the_first_check_not_busy(
    qapp: object, passes: list[int]
) -> None:
    busy = True
    collector = GuiThreadGarbageCollector(busy=lambda: busy)
    try:
        assert gc.get_freeze_count() == 0
        collector.settle_soon()
        collector.check()
        assert gc.get_freeze_count() == 0  # waits while a reply streams
        busy = False
        passes.clear()
        collector.check()
        assert passes == [2]  # one full collection, then the freeze
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the test process's modules, classes, widgets
        assert len(gc.get_objects()) < frozen  # later collections walk far fewer
        cycle = _Cycle()
        collector.settle_soon()  # once per install: a second request freezes nothing
        collector.check()
        assert gc.get_freeze_count() == frozen
        assert any(o is cycle for o in gc.get_objects())  # still in the collector's reach
    finally:
        collector.uninstall()
        collector.deleteLater()
    assert gc.get_freeze_count() == 0  # uninstall gives everything back


def test_uninstall_unfreezes_only_what_it_froze(qapp: object) -> None:
    collector = GuiThreadGarbageCollector()
    gc.freeze()
    try:
        collector.uninstall()
        assert gc.get_freeze_count() > 0  # someone else's freeze is theirs to undo
    finally:
        gc.unfreeze()
        collector.deleteLater()
