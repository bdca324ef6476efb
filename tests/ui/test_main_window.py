"""The main window, driven like a person would, with the real SmolLM2-135M model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.engine import LoadOptions
from app.core.errors import HearthError
from app.core.events import GenerationDone, GenerationStats, StopReason
from app.core.library import resolve_model
from app.core.paths import app_paths
from app.core.sampling import SamplingSettings
from app.ui.main_window import MainWindow, format_stats

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)  # one thread: robust on a busy 2-core machine
SHORT = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
LONG = SHORT.with_changes(max_tokens=400)
TIMEOUT_MS = 60_000

MakeWindow = Callable[..., MainWindow]


@pytest.fixture
def make_window(qtbot: QtBot) -> Iterator[MakeWindow]:
    """Build shown windows; each one's worker thread must have ended after the test."""
    made: list[MainWindow] = []

    def make(settings: SamplingSettings = SHORT, model: Path | None = None) -> MainWindow:
        window = MainWindow(settings=settings, load_options=OPTIONS)
        qtbot.addWidget(window)
        made.append(window)
        window.show()
        qtbot.waitExposed(window)
        if model is not None:
            window.load_model(model)
            qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
        return window

    yield make
    for window in made:
        window.close()
        assert window.inference.qthread.isFinished()
        assert window.inference.worker.is_closed


def child(window: MainWindow, kind: type[QWidget], name: str) -> QWidget:
    widget = window.findChild(kind, name)
    assert isinstance(widget, kind), name
    return widget


def label_text(window: MainWindow, name: str) -> str:
    label = child(window, QLabel, name)
    assert isinstance(label, QLabel)
    return label.text()


def transcript_text(window: MainWindow, name: str = "transcript") -> str:
    """Plain text of the transcript (or of another QPlainTextEdit, by object name)."""
    edit = child(window, QPlainTextEdit, name)
    assert isinstance(edit, QPlainTextEdit)
    return edit.toPlainText()


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    composer = child(window, QPlainTextEdit, "composer")
    qtbot.keyClicks(composer, text)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


def wait_reply_done(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.active_request is None, timeout=TIMEOUT_MS)


def wait_streaming(qtbot: QtBot, window: MainWindow) -> None:
    """Until some reply text has arrived in the transcript."""
    qtbot.waitUntil(lambda: not transcript_text(window).endswith("Assistant\n"), timeout=TIMEOUT_MS)
    assert window.active_request is not None


def test_window_has_title_and_named_interactive_widgets(make_window: MakeWindow) -> None:
    window = make_window()
    assert window.windowTitle() == "Hearth"
    for name in (
        "transcript",
        "composer",
        "sendButton",
        "stopButton",
        "noticeOpenButton",
        "noticeDismissButton",
        "cancelLoadButton",
        "loadProgressBar",
        "modelStatusLabel",
        "noticeLabel",
    ):
        assert child(window, QWidget, name).accessibleName(), name
    for kind in (QPushButton, QPlainTextEdit, QProgressBar):
        for widget in window.findChildren(kind):
            assert widget.objectName() and widget.accessibleName(), widget
    transcript = child(window, QPlainTextEdit, "transcript")
    assert isinstance(transcript, QPlainTextEdit) and transcript.isReadOnly()


def test_enter_sends_and_the_reply_streams_into_the_transcript(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send_button = child(window, QPushButton, "sendButton")
    assert send_button.isEnabled()
    send(qtbot, window, "Say hello in one short sentence.")
    assert window.active_request is not None
    assert not send_button.isEnabled()
    assert child(window, QPushButton, "stopButton").isEnabled()
    wait_reply_done(qtbot, window)

    user, reply = window.conversation
    assert (user.role, user.content) == ("user", "Say hello in one short sentence.")
    assert reply.role == "assistant" and reply.content.strip()
    text = transcript_text(window)
    assert "Say hello in one short sentence." in text
    assert reply.content.strip() in text
    stats_line = text.splitlines()[-1]
    assert "tokens" in stats_line and "tok/s" in stats_line and "TTFT" in stats_line
    assert "seed" in stats_line
    assert not transcript_text(window, "composer")
    assert send_button.isEnabled()
    assert not child(window, QPushButton, "stopButton").isEnabled()


def test_the_conversation_continues_with_context(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "My name is Ada.")
    wait_reply_done(qtbot, window)
    send(qtbot, window, "What is my name?")
    wait_reply_done(qtbot, window)
    assert [m.role for m in window.conversation] == ["user", "assistant"] * 2
    assert transcript_text(window).count("tok/s") == 2


def test_shift_enter_starts_a_new_line_without_sending(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    composer = child(window, QPlainTextEdit, "composer")
    qtbot.keyClicks(composer, "first")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "second")
    assert isinstance(composer, QPlainTextEdit)
    assert composer.toPlainText() == "first\nsecond"
    assert window.active_request is None
    assert window.conversation == ()


def test_stop_button_cancels_the_reply(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    send(qtbot, window, "Count from 1 to 300, one number per line.")
    wait_streaming(qtbot, window)
    qtbot.mouseClick(child(window, QPushButton, "stopButton"), Qt.MouseButton.LeftButton)
    wait_reply_done(qtbot, window)
    assert "stopped" in transcript_text(window).splitlines()[-1]
    assert window.conversation[-1].role == "assistant"


def test_escape_cancels_the_reply(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    send(qtbot, window, "Count from 1 to 300, one number per line.")
    wait_streaming(qtbot, window)
    qtbot.keyClick(child(window, QPlainTextEdit, "composer"), Qt.Key.Key_Escape)
    wait_reply_done(qtbot, window)
    assert "stopped" in transcript_text(window).splitlines()[-1]


def test_events_with_stale_request_ids_are_ignored(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Say hello.")
    wait_reply_done(qtbot, window)
    before_text, before_chat = transcript_text(window), window.conversation
    worker = window.inference.worker
    stats = GenerationStats(1, 0, 1.0, 1.0, 1.0, 1, 1.0, 1.0, StopReason.END_OF_TURN, 7)
    fake = GenerationDone(text="STALE", tail="STALE", tokens=(1,), stats=stats)
    for request_id in (0, 1, 99):  # never sent, already finished, not yet sent
        worker.tokens.emit(request_id, "STALE", 1)
        worker.finished.emit(request_id, fake)
        worker.failed.emit(request_id, "STALE failure")
    assert transcript_text(window) == before_text
    assert window.conversation == before_chat
    assert "STALE" not in transcript_text(window)


def test_closing_mid_reply_stops_the_worker_thread(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    send(qtbot, window, "Count from 1 to 300, one number per line.")
    wait_streaming(qtbot, window)
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 10.0
    assert window.inference.qthread.isFinished()
    assert window.inference.worker.is_closed
    assert not window.isVisible()


def test_missing_starter_model_explains_what_to_do(make_window: MakeWindow, tmp_path: Path) -> None:
    window = make_window()
    with pytest.raises(HearthError) as caught:
        resolve_model(None, app_paths(tmp_path / "home"))
    window.show_missing_model(caught.value.message)
    notice = label_text(window, "noticeLabel")
    assert child(window, QWidget, "noticeBar").isVisible()
    assert "hearth starter" in notice
    assert "Open model" in notice
    assert child(window, QPushButton, "noticeOpenButton").isVisible()
    assert not child(window, QPushButton, "sendButton").isEnabled()


def test_a_file_that_is_not_a_gguf_is_reported_by_name(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    bogus = tmp_path / "holiday-photo.gguf"
    bogus.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4096))
    window.load_model(bogus)
    assert child(window, QProgressBar, "loadProgressBar").isVisible()
    assert child(window, QPushButton, "cancelLoadButton").isVisible()
    qtbot.waitUntil(lambda: not window.is_loading, timeout=TIMEOUT_MS)
    assert "holiday-photo.gguf" in label_text(window, "noticeLabel")
    assert window.model is None
    assert not child(window, QProgressBar, "loadProgressBar").isVisible()
    assert label_text(window, "modelStatusLabel") == "No model loaded"


def test_cancel_button_cancels_loading(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window()
    window.load_model(starter_model)
    qtbot.mouseClick(child(window, QPushButton, "cancelLoadButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.is_loading, timeout=TIMEOUT_MS)
    assert window.model is None
    assert not child(window, QPushButton, "cancelLoadButton").isVisible()
    assert not child(window, QPushButton, "sendButton").isEnabled()


def test_open_model_loads_the_chosen_file(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(starter_model), ""))
    )
    window.open_model_dialog()
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert window.model is not None and window.model.info.path == starter_model
    assert "Q4_1" in label_text(window, "modelStatusLabel")
    assert child(window, QPushButton, "sendButton").isEnabled()


def test_format_stats_is_one_readable_line() -> None:
    stats = GenerationStats(
        prompt_tokens=30,
        cached_tokens=0,
        prefill_ms=50.0,
        prefill_tps=600.0,
        ttft_ms=61.4,
        completion_tokens=16,
        decode_ms=200.0,
        decode_tps=75.04,
        stop_reason=StopReason.MAX_TOKENS,
        seed=42,
    )
    assert format_stats(stats) == "16 tokens · 75.0 tok/s · TTFT 61 ms · max tokens · seed 42"
