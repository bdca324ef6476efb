"""A model that crashes llama.cpp, loaded from the window: the app stays up, says why, and
loads another model at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from tests.gguf_fuzz import write_crashing_gguf
from tests.ui import test_main_window
from tests.ui.test_main_window import (
    COUNT,
    LONG,
    TIMEOUT_MS,
    MakeWindow,
    send,
    streamed_text,
    wait_reply_done,
)

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def test_a_crashing_model_is_refused_and_the_window_goes_on(
    qtbot: QtBot,
    make_window: MakeWindow,
    starter_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEARTH_PROBE_CACHE", str(tmp_path / "probe"))
    bad = write_crashing_gguf(tmp_path / "int-embeddings.gguf", "abort")
    window = make_window()
    with qtbot.waitSignal(window.modelLoadEnded, timeout=TIMEOUT_MS):
        window.load_model(bad)
    assert window.model is None
    assert "int-embeddings.gguf" in window.notice_text
    assert "crash" in window.notice_text
    # The same window loads a good model and chats.
    window.load_model(starter_model)
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    send(qtbot, window, "Hello")
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].content


def test_llama_cpp_dying_mid_reply_keeps_the_window_the_chat_and_the_partial_reply(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    """The engine host is killed the way a llama.cpp abort kills it (SIGABRT) while a reply
    streams: the window lives on, the reply so far is kept and says what happened, and the
    model loads again and chats at once."""
    window = make_window(model=starter_model, settings=LONG)
    send(qtbot, window, COUNT)
    qtbot.waitUntil(lambda: len(streamed_text(window)) > 20, timeout=TIMEOUT_MS)
    pid = window._inference.worker.host_pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGABRT)
    wait_reply_done(qtbot, window)
    qtbot.waitUntil(lambda: window.model is None, timeout=TIMEOUT_MS)
    reply = window.current_path[-1]
    assert reply.role == "assistant" and reply.content.startswith("1")  # the partial reply
    assert reply.status == "error"
    error = window.findChild(QLabel, "errorNoticeLabel")
    assert error is not None and error.isVisible()
    assert "llama.cpp stopped while writing a reply" in error.text()
    assert starter_model.name in error.text() and "abort" in error.text()
    # The app goes on: the model loads again in a fresh host and the chat continues.
    window.load_model(starter_model)
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert window._inference.worker.host_pid not in (None, pid)
    send(qtbot, window, "Hello")
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].content
    assert window.current_path[-1].status != "error"


def test_an_engine_host_that_dies_while_idle_is_noticed(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    """Killed between replies (the OOM killer, a person's kill): the window says so and
    shows no model, rather than failing the next message."""
    window = make_window(model=starter_model)
    pid = window._inference.worker.host_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: window.model is None, timeout=TIMEOUT_MS)
    assert starter_model.name in window.notice_text and "stopped" in window.notice_text
    window.load_model(starter_model)
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    send(qtbot, window, "Hello")
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].content
