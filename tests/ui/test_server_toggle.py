"""The API server in the window: switched on from the Model menu, it answers an OpenAI
client on loopback while the chat keeps working, counts requests, and switches off."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow, send, wait_reply_done

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_the_server_toggle_serves_the_loaded_model(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    action = window.findChild(QObject, "serverAction")
    server = window._server
    with qtbot.waitSignal(window._inference.worker.serving, timeout=TIMEOUT_MS):
        action.trigger()  # type: ignore[union-attr]
    # The controller hears `serving` by its own queued connection, maybe after this test.
    qtbot.waitUntil(lambda: server.url is not None, timeout=TIMEOUT_MS)
    url = server.url
    assert url is not None and url.startswith("http://127.0.0.1:")
    label = window.findChild(QLabel, "serverLabel")
    assert label is not None and url in label.text()

    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        listed = json.loads(response.read())["data"]
    assert len(listed) == 1  # the model the window has loaded
    reply = post(
        f"{url}/chat/completions",
        {
            "model": listed[0]["id"],
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    assert reply["choices"][0]["message"]["content"]  # type: ignore[index]
    # Two requests answered (the model list and the reply), counted in the status bar.
    qtbot.waitUntil(lambda: "· 2 requests" in label.text(), timeout=TIMEOUT_MS)
    # The chat works while the server is on.
    send(qtbot, window, "Hello")
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].content

    with qtbot.waitSignal(window._inference.worker.serveStopped, timeout=TIMEOUT_MS):
        action.trigger()  # type: ignore[union-attr]
    assert server.url is None and label.isHidden()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=5)
