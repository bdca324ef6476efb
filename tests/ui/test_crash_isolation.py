"""A model that crashes llama.cpp, loaded from the window: the app stays up, says why, and
loads another model at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.gguf_fuzz import write_crashing_gguf
from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow, send, wait_reply_done

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
