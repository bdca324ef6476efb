"""The window with a model on a server: a real `hearth serve` on loopback with the starter
model, a connection added through Model → Connections…, its model picked, a chat."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QPushButton, QTreeWidget
from pytestqt.qtbot import QtBot

from app.core.chats.conversation import reply_summary
from app.core.inference.backend import Capabilities
from app.core.inference.connections import ConnectionStore
from app.core.inference.remote_server import samplers_of
from app.core.inference.sampling import SamplingSettings
from app.core.paths import app_paths
from app.ui.controllers.remote import unsupported_reason
from app.ui.controllers.state import RemoteInUse
from app.ui.main_window import MainWindow
from tests.core.inference.remote_servers import free_port
from tests.core.server.conftest import Served, start_serve, stop_serve
from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow, Replies, send, streamed_text
from tests.ui.test_token_inspector import open_tokens, reply_block

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


@pytest.fixture(scope="module")
def served(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_serve(tmp_path_factory.mktemp("gui-remote"), starter_model)
    yield server
    stop_serve(server)


def click(window: QObject, name: str) -> None:
    button = window.findChild(QPushButton, name)
    assert button is not None, name
    assert button.isEnabled(), f"{name} is disabled"
    button.click()


def connect_through_the_dialog(qtbot: QtBot, window: MainWindow, served: Served) -> str:
    """Model → Connections…: add, test, use the first model; returns the model's name."""
    window.findChild(QObject, "connectionsAction").trigger()  # type: ignore[union-attr]
    dialog = window.remote.dialog
    assert dialog is not None and dialog.isVisible()
    privacy = dialog.findChild(QLabel, "connectionsPrivacyNote")
    assert privacy is not None and "leave this machine" in privacy.text()
    dialog.fill("gpu box", served.url)
    click(dialog, "saveConnectionButton")
    listed = dialog.findChild(QObject, "connectionsList")
    qtbot.waitUntil(lambda: listed.count() == 1, timeout=TIMEOUT_MS)  # type: ignore[union-attr]
    assert "gpu box" in listed.item(0).text()  # type: ignore[union-attr]
    click(dialog, "testConnectionButton")
    qtbot.waitUntil(lambda: bool(dialog.model_names), timeout=TIMEOUT_MS)
    assert served.model in dialog.model_names
    assert "round trip" in dialog.result_text and " ms" in dialog.result_text
    assert "hearth server" in dialog.result_text
    click(dialog, "useRemoteModelButton")
    qtbot.waitUntil(lambda: window.remote_model is not None, timeout=TIMEOUT_MS)
    return dialog.model_names[0]


def test_a_chat_with_a_servers_model_picked_in_the_connections_dialog(
    qtbot: QtBot, make_window: MakeWindow, served: Served
) -> None:
    window = make_window()
    model = connect_through_the_dialog(qtbot, window, served)
    remote = window.remote_model
    assert remote is not None and remote.title == f"{model} @ gpu box"
    status = window.findChild(QLabel, "modelStatusLabel")
    assert status is not None and status.text() == f"{model} @ gpu box"
    panel_model = window.findChild(QLabel, "modelModelValue")
    assert panel_model is not None and panel_model.text() == model
    # hearth serve takes every slider; it has no /tokenize, so counts are estimates.
    assert not window.sampling_panel.value_control("top_k").unsupported_reason
    window.composer.set_text("Say hello.")
    count = window.findChild(QLabel, "draftTokenLabel")
    assert count is not None
    qtbot.waitUntil(lambda: "estimated" in count.text(), timeout=TIMEOUT_MS)
    assert "/tokenize" in count.toolTip()

    window.composer.set_text("")
    replies = Replies(window)
    send(qtbot, window, "Say hello in one short sentence.")
    qtbot.waitUntil(lambda: bool(replies.finished or replies.failed), timeout=TIMEOUT_MS)
    assert not replies.failed, replies.failed
    reply = replies.finished[0][1]
    assert reply is not None and reply.content.strip() and reply.status == "complete"
    assert reply.model == f"{model} @ gpu box"
    stats = reply.stats or {}
    assert stats["connection"] == "gpu box" and stats["completion_tokens"] > 0
    assert stats["ttft_ms"] > 0 and stats["prompt_tokens"] > 0
    summary = reply_summary(reply)
    assert "server gpu box" in summary and "first token" in summary
    shown = reply_block(window).findChild(QLabel, "replyStatsLabel")
    assert shown is not None and shown.text() == summary

    # Token probabilities from the server's logprobs, in the tokens view.
    panel = open_tokens(qtbot, reply_block(window))
    records = panel.view.records
    assert records and any(r.top for r in records)
    assert all(0.0 <= r.prob <= 1.0 for r in records)
    # The live explorer says the server cannot give a full distribution.
    explorer_text = " ".join(
        label.text() for label in window.findChildren(QLabel) if label.isVisibleTo(window)
    )
    assert "not available from this server" in explorer_text
    assert window.model is None  # the local model is not in use meanwhile


def test_a_setting_the_server_does_not_take_is_disabled_with_its_reason(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    panel = window.sampling_panel
    remote = RemoteInUse(
        "ollama box",
        "llama3",
        "http://127.0.0.1:1/v1",
        "ollama",
        8192,
        Capabilities(False, False, False, False, False, samplers_of("ollama")),
    )
    panel.set_unsupported(remote.capabilities.samplers, unsupported_reason(remote))
    top_k = panel.value_control("top_k")
    assert not top_k.slider.isEnabled() and not top_k.spin.isEnabled()
    assert "ollama box" in top_k.slider.toolTip() and "does not take" in top_k.slider.toolTip()
    assert top_k.unsupported_reason == top_k.slider.toolTip()
    temperature = panel.value_control("temperature")
    assert temperature.slider.isEnabled() and not temperature.unsupported_reason
    panel.set_unsupported(None, "")
    assert top_k.slider.isEnabled() and top_k.slider.toolTip() == top_k.spec.tooltip


def test_a_reply_cut_by_the_server_is_kept_and_says_what_happened(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, tmp_path: Path
) -> None:
    doomed = start_serve(tmp_path / "doomed", starter_model)
    try:
        window = make_window(settings=SamplingSettings(max_tokens=1500, seed=1))
        connect_through_the_dialog(qtbot, window, doomed)
        replies = Replies(window)
        send(qtbot, window, "Tell a very long story.")
        qtbot.waitUntil(lambda: len(streamed_text(window)) > 20, timeout=TIMEOUT_MS)
        doomed.process.send_signal(signal.SIGKILL)
        qtbot.waitUntil(lambda: bool(replies.finished or replies.failed), timeout=TIMEOUT_MS)
    finally:
        doomed.process.kill()
        doomed.process.wait()
        assert doomed.process.stdout is not None
        doomed.process.stdout.close()
    assert not replies.failed, replies.failed
    reply = replies.finished[0][1]
    assert reply is not None and reply.status == "interrupted" and len(reply.content) > 20
    status = reply_block(window).findChild(QLabel, "replyStatusLabel")
    assert status is not None and status.isVisibleTo(window)
    assert status.text().startswith("Interrupted: The connection to gpu box")
    assert "Hearth closed" not in status.text()
    assert "partial reply is kept" in window.statusBar().currentMessage()


def test_the_model_manager_lists_a_servers_models_beside_the_local_ones(
    qtbot: QtBot, make_window: MakeWindow, served: Served, tmp_path: Path
) -> None:
    paths = app_paths(tmp_path / "picker").ensure()
    ConnectionStore(paths.config, keychain=False).add("gpu box", served.url)
    window = make_window(paths=paths)
    assert window.remote_model is None
    manager = window.models.open_model_manager()
    library = manager.library
    qtbot.waitUntil(
        lambda: bool(library.remote_models) and not library.is_scanning, timeout=TIMEOUT_MS
    )
    row = library.remote_models[0]
    assert (row.connection, row.model, row.kind) == ("gpu box", served.model, "hearth")
    tree = library.findChild(QTreeWidget, "libraryTree")
    assert tree is not None
    sources = [tree.topLevelItem(i).text(5) for i in range(tree.topLevelItemCount())]  # type: ignore[union-attr]
    assert "gpu box (server)" in sources
    assert library.select_remote("gpu box", served.model)
    details = library.findChild(QLabel, "libraryDetails")
    assert details is not None and "leave this machine" in details.text()
    assert not library.findChild(QPushButton, "deleteModelButton").isEnabled()  # type: ignore[union-attr]
    click(library, "loadLibraryModelButton")
    qtbot.waitUntil(lambda: window.remote_model is not None, timeout=TIMEOUT_MS)
    assert window.remote_model.title == f"{served.model} @ gpu box"  # type: ignore[union-attr]


def test_a_server_that_cannot_be_used_is_explained_in_the_dialog_and_the_notice_bar(
    qtbot: QtBot, make_window: MakeWindow, served: Served
) -> None:
    window = make_window()
    window.remote.open_connections()
    dialog = window.remote.dialog
    assert dialog is not None
    dialog.fill("nowhere", f"http://127.0.0.1:{free_port()}/v1")
    click(dialog, "testConnectionButton")
    qtbot.waitUntil(lambda: "connection refused" in dialog.result_text, timeout=TIMEOUT_MS)
    assert not dialog.model_names
    dialog.fill("gpu box", served.url)
    click(dialog, "saveConnectionButton")
    qtbot.waitUntil(lambda: dialog.select("gpu box"), timeout=TIMEOUT_MS)
    window.remote.use_model("gpu box", "no-such-model")
    qtbot.waitUntil(lambda: "no-such-model" in window.notice_text, timeout=TIMEOUT_MS)
    assert "does not serve the model" in window.notice_text
    assert window.remote_model is None
