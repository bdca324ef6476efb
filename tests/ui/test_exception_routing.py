"""An exception raised in a Qt slot reaches the log and the notice bridge, not stderr only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QTimer, Slot
from pytestqt.qtbot import QtBot

from app.core.errors import StorageFullError
from app.core.logs import setup_logging
from app.ui.app import route_exceptions
from app.ui.notices import NoticeBridge, notice_bridge


class Clumsy(QObject):
    """A handler that fails the way a bug in a controller would."""

    @Slot()
    def on_click(self) -> None:
        raise ZeroDivisionError("the sum went wrong")

    @Slot()
    def on_save(self) -> None:
        raise StorageFullError("The disk holding /data is full: the last change was not saved.")


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = setup_logging(tmp_path / "logs")
    yield path
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "baseFilename", None) == str(path)]:
        root.removeHandler(handler)
        handler.close()


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_slot_is_logged_and_posted_with_the_log_path(
    qtbot: QtBot, log_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clumsy = Clumsy()
    with route_exceptions(), qtbot.waitSignal(notice_bridge().notice, timeout=5000) as posted:
        QTimer.singleShot(0, clumsy.on_click)

    text = posted.args[0]
    assert "ZeroDivisionError: the sum went wrong" in text
    assert str(log_file) in text
    logged = log_file.read_text(encoding="utf-8")
    assert "unexpected error in an event handler" in logged
    assert "Traceback" in logged and "in on_click" in logged
    err = capsys.readouterr().err
    assert err.strip() == f"hearth: error: {text}"  # one line, no traceback


@pytest.mark.qt_no_exception_capture
def test_a_hearth_error_in_a_slot_is_shown_as_its_own_message(qtbot: QtBot, log_file: Path) -> None:
    clumsy = Clumsy()
    with route_exceptions(), qtbot.waitSignal(notice_bridge().notice, timeout=5000) as posted:
        QTimer.singleShot(0, clumsy.on_save)
    assert posted.args == ["The disk holding /data is full: the last change was not saved."]
    assert "StorageFullError" in log_file.read_text(encoding="utf-8")


def test_an_exception_in_a_python_thread_is_routed_too(qtbot: QtBot, log_file: Path) -> None:
    def work() -> None:
        raise RuntimeError("worker fell over")

    with route_exceptions(), qtbot.waitSignal(notice_bridge().notice, timeout=5000) as posted:
        thread = threading.Thread(target=work, name="clumsy-worker")
        thread.start()
        thread.join()
    assert "RuntimeError: worker fell over" in posted.args[0]
    assert "worker fell over" in log_file.read_text(encoding="utf-8")


def test_the_hooks_are_put_back_afterwards() -> None:
    import sys

    before = (sys.excepthook, threading.excepthook)
    with route_exceptions():
        assert sys.excepthook is not before[0]
    assert (sys.excepthook, threading.excepthook) == before


def test_the_bridge_is_one_per_process(qapp: object) -> None:
    assert notice_bridge() is notice_bridge()
    assert isinstance(notice_bridge(), NoticeBridge)
