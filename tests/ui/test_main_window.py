"""The full window, driven like a person would, with the real SmolLM2-135M model and store."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.chats.conversation import StoredMessage, reply_summary
from app.core.chats.store import Store
from app.core.inference.events import GenerationDone, GenerationStats, StopReason
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.sampling import SamplingSettings
from app.core.paths import AppPaths, app_paths
from app.ui.chat.message_block import MessageBlock
from app.ui.main_window import MainWindow, process_memory
from app.ui.models.load_options_dialog import LoadOptionsDialog
from app.workers.inference_thread import InferenceThread
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf
from tests.simulated_gpu import FullGpu

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)  # one thread: robust on a busy 2-core machine
SHORT = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
LONG = SHORT.with_changes(max_tokens=400)
COUNT = "Count from 1 to 300, one number per line."
TIMEOUT_MS = 60_000

MakeWindow = Callable[..., MainWindow]


class Replies(QObject):
    """Records the window's reply signals (through @Slot methods)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.started: list[tuple[int, int]] = []
        self.finished: list[tuple[int, StoredMessage | None]] = []
        self.failed: list[tuple[int, str]] = []
        window.replyStarted.connect(self.on_started)
        window.replyFinished.connect(self.on_finished)
        window.replyFailed.connect(self.on_failed)

    @Slot(int, int)
    def on_started(self, request_id: int, message_id: int) -> None:
        self.started.append((request_id, message_id))

    @Slot(int, object)
    def on_finished(self, request_id: int, message: object) -> None:
        assert message is None or isinstance(message, StoredMessage)
        self.finished.append((request_id, message))

    @Slot(int, str)
    def on_failed(self, request_id: int, text: str) -> None:
        self.failed.append((request_id, text))


@pytest.fixture
def make_window(qtbot: QtBot, tmp_path: Path) -> Iterator[MakeWindow]:
    """Build shown windows on a data dir; each one's threads must have ended after the test."""
    made: list[MainWindow] = []

    def make(
        settings: SamplingSettings = SHORT,
        model: Path | None = None,
        paths: AppPaths | None = None,
        inference: InferenceThread | None = None,
    ) -> MainWindow:
        paths = paths or app_paths(tmp_path / f"home{len(made)}").ensure()
        with Store.open(paths) as store:
            store.set_default_settings(settings)
        window = MainWindow(paths, load_options=OPTIONS, inference=inference)
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
        assert window.token_counter.qthread.isFinished()
        assert window.kv_snapshots.keeper.thread() is window.thread()


def child(parent: QWidget, kind: type[QWidget], name: str) -> QWidget:
    widget = parent.findChild(kind, name)
    assert isinstance(widget, kind), name
    return widget


def composer_input(window: MainWindow) -> QWidget:
    """The composer's text field."""
    composer = window.composer
    for kind in (QPlainTextEdit, QTextEdit):
        if isinstance(composer, kind):
            return composer
        found = composer.findChild(kind)
        if isinstance(found, kind):
            return found
    raise AssertionError("the composer has no text field")


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    field = composer_input(window)
    field.setFocus()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, Qt.Key.Key_Return)


def wait_reply_done(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(
        lambda: window.active_request is None and window.replies_in_flight == 0,
        timeout=TIMEOUT_MS,
    )


def streamed_text(window: MainWindow) -> str:
    active = window.active_reply
    return active.writer.text if active is not None else ""


def wait_streaming(qtbot: QtBot, window: MainWindow) -> None:
    """Until some reply text has arrived."""
    qtbot.waitUntil(lambda: bool(streamed_text(window).strip()), timeout=TIMEOUT_MS)


def block_of(window: MainWindow, message_id: int) -> MessageBlock:
    block = window.chat_view.message_block(message_id)
    assert block is not None, message_id
    return block


def click(qtbot: QtBot, button: QWidget) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def activate(qtbot: QtBot, window: MainWindow) -> None:
    """Make the window the active one, so its shortcuts fire."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


# ----- the window -----


def test_layout_names_and_menus(make_window: MakeWindow) -> None:
    window = make_window()
    assert window.windowTitle().endswith("Hearth")
    splitter = child(window, QSplitter, "mainSplitter")
    assert isinstance(splitter, QSplitter)
    assert [splitter.widget(i).objectName() for i in range(3)] == [
        "conversationList",
        "chatColumn",
        "sideColumn",
    ]
    side = splitter.widget(2)
    for name in ("samplingPanel", "explorerPanel", "contextView"):
        assert side.findChild(QWidget, name) is not None, name
    for name in (
        "newChatAction",
        "openModelAction",
        "importAction",
        "exportChatAction",
        "exportAllAction",
        "quitAction",
        "toggleSidebarAction",
        "toggleSettingsAction",
        "searchAction",
        "loadOptionsAction",
        "aboutMachineAction",
    ):
        assert window.findChild(QObject, name) is not None, name
    for name in ("modelStatusLabel", "backendLabel", "memoryLabel", "loadProgressBar"):
        assert child(window, QWidget, name).accessibleName(), name
    assert "Memory" in child(window, QLabel, "memoryLabel").text()  # type: ignore[attr-defined]
    for kind in (QAbstractButton, QLineEdit, QPlainTextEdit, QAbstractSpinBox, QProgressBar):
        for widget in window.findChildren(kind):
            if widget.objectName() == "qt_spinbox_lineedit" or widget.objectName().startswith(
                "qt_"
            ):
                continue
            assert widget.objectName() and widget.accessibleName(), widget


def test_view_menu_toggles_the_side_panels(qtbot: QtBot, make_window: MakeWindow) -> None:
    window = make_window()
    activate(qtbot, window)
    sidebar, panel = window.conversation_list, window.sampling_panel
    assert sidebar.isVisible() and panel.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert not sidebar.isVisible()
    qtbot.keyClick(
        window,
        Qt.Key.Key_B,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert not panel.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert sidebar.isVisible()
    assert child(window, QLineEdit, "searchField").hasFocus()


def test_first_run_without_a_model_shows_the_welcome_panel(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    welcome = window.welcome_panel
    assert welcome.isVisible()
    assert not child(window, QPushButton, "loadStarterButton").isVisible()
    hint = child(window, QLabel, "starterHintLabel")
    assert "download it" in hint.text()  # type: ignore[attr-defined]
    assert child(window, QPushButton, "getStarterButton").isVisible()
    assert child(window, QPushButton, "welcomeOpenButton").isVisible()
    assert child(window, QPushButton, "welcomeBrowseButton").isVisible()


def test_welcome_panel_loads_the_installed_starter_model(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, starter_model: Path
) -> None:
    paths = app_paths(tmp_path / "with-starter").ensure()
    (paths.models / starter_model.name).symlink_to(starter_model)
    window = make_window(paths=paths)
    button = child(window, QPushButton, "loadStarterButton")
    assert button.isVisible()
    assert not child(window, QPushButton, "getStarterButton").isVisible()
    click(qtbot, button)
    assert child(window, QProgressBar, "loadProgressBar").isVisible()
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert not window.welcome_panel.isVisible()
    assert window.chat_view.isVisible()
    assert "Q4_1" in child(window, QLabel, "modelStatusLabel").text()  # type: ignore[attr-defined]
    assert child(window, QLabel, "backendLabel").text().startswith("CPU")  # type: ignore[attr-defined]
    assert child(window, QLabel, "modelQuantizationValue").text() == "Q4_1"  # type: ignore[attr-defined]


def test_the_composer_has_the_focus_while_the_model_loads(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window()
    activate(qtbot, window)
    window.load_model(starter_model)  # what `hearth --model PATH` does, then focus_composer
    window.focus_composer()
    assert composer_input(window).hasFocus()
    qtbot.keyClicks(composer_input(window), "typed at once")
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert window.composer.text() == "typed at once"


def test_cancel_button_cancels_loading(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window()
    window.load_model(starter_model)
    click(qtbot, child(window, QPushButton, "cancelLoadButton"))
    qtbot.waitUntil(lambda: not window.is_loading, timeout=TIMEOUT_MS)
    assert window.model is None
    assert not child(window, QPushButton, "cancelLoadButton").isVisible()


def test_a_file_that_is_not_a_gguf_is_reported_by_name(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    bogus = tmp_path / "holiday-photo.gguf"
    bogus.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4096))
    window.load_model(bogus)
    qtbot.waitUntil(lambda: not window.is_loading, timeout=TIMEOUT_MS)
    assert "holiday-photo.gguf" in window.notice_text
    assert window.model is None


def test_open_model_loads_the_chosen_file(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(starter_model), ""))
    )
    window.findChild(QObject, "openModelAction").trigger()  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert window.model is not None and window.model.info.path == starter_model


# ----- chatting -----


def test_type_and_send_streams_the_reply_and_saves_it(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    replies = Replies(window)
    send(qtbot, window, "Say hello in one short sentence.")
    assert window.active_request is not None
    assert child(window, QPushButton, "stopButton").isEnabled()
    wait_reply_done(qtbot, window)

    conversation_id = window.current_conversation_id
    assert conversation_id is not None
    user, reply = window.store.active_path(conversation_id)
    assert (user.role, user.content) == ("user", "Say hello in one short sentence.")
    assert reply.role == "assistant" and reply.content.strip() and reply.status == "complete"
    assert reply.settings == SHORT and reply.seed is not None
    assert reply.stats is not None and reply.stats["completion_tokens"] > 0
    assert reply.model == starter_model.name
    assert replies.finished == [(replies.started[0][0], reply)]
    block = block_of(window, reply.id)
    assert reply.content.strip() in block.text.toPlainText()
    stats = child(block, QLabel, "replyStatsLabel").text()  # type: ignore[attr-defined]
    assert "tokens" in stats and "seed" in stats
    assert window.store.conversation(conversation_id).title == "Say hello in one short sentence."
    assert window.conversation_list.model.rowCount() == 1
    assert not child(window, QPushButton, "stopButton").isEnabled()


def test_the_conversation_continues_with_context(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "My name is Ada.")
    wait_reply_done(qtbot, window)
    send(qtbot, window, "What is my name?")
    wait_reply_done(qtbot, window)
    assert [m.role for m in window.current_path] == ["user", "assistant"] * 2


def test_stop_button_cancels_the_reply_and_keeps_its_text(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    send(qtbot, window, COUNT)
    wait_streaming(qtbot, window)
    click(qtbot, child(window, QPushButton, "stopButton"))
    wait_reply_done(qtbot, window)
    reply = window.current_path[-1]
    assert reply.status == "cancelled" and reply.content.strip()
    assert reply.stats is not None and reply.stats["stop_reason"] == "cancelled"


def test_escape_cancels_the_reply(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    activate(qtbot, window)
    send(qtbot, window, COUNT)
    wait_streaming(qtbot, window)
    qtbot.keyClick(composer_input(window), Qt.Key.Key_Escape)
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].status == "cancelled"


def test_regenerate_makes_a_new_version_and_arrows_switch(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name a colour.")
    wait_reply_done(qtbot, window)
    first = window.current_path[-1]
    window.sampling_panel.value_control("temperature").spin.setValue(1.5)
    click(qtbot, child(block_of(window, first.id), QWidget, "regenerateButton"))
    wait_reply_done(qtbot, window)
    second = window.current_path[-1]
    assert second.id != first.id and second.parent_id == first.parent_id
    assert second.settings is not None and second.settings.temperature == pytest.approx(1.5)
    block = block_of(window, second.id)
    assert child(block, QLabel, "versionLabel").text() == "2/2"  # type: ignore[attr-defined]
    click(qtbot, child(block, QWidget, "previousVersionButton"))
    assert window.current_path[-1].id == first.id
    assert window.store.active_path(first.conversation_id)[-1].id == first.id
    block = block_of(window, first.id)
    assert child(block, QLabel, "versionLabel").text() == "1/2"  # type: ignore[attr-defined]
    click(qtbot, child(block, QWidget, "nextVersionButton"))
    assert window.current_path[-1].id == second.id


def test_regenerate_with_these_settings_reuses_settings_and_seed(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=SHORT.with_changes(temperature=0.9), model=starter_model)
    send(qtbot, window, "Invent a name for a boat.")
    wait_reply_done(qtbot, window)
    first = window.current_path[-1]
    window.sampling_panel.value_control("temperature").spin.setValue(0.1)
    click(qtbot, child(block_of(window, first.id), QWidget, "regenerateWithSettingsButton"))
    wait_reply_done(qtbot, window)
    again = window.current_path[-1]
    assert again.id != first.id
    assert again.seed == first.seed
    assert again.settings is not None and again.settings.temperature == pytest.approx(0.9)
    assert again.content == first.content  # same settings and seed: the same reply


def test_edit_a_user_message_into_a_new_branch(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name a fruit.")
    wait_reply_done(qtbot, window)
    user = window.current_path[0]
    block = block_of(window, user.id)
    click(qtbot, child(block, QWidget, "editButton"))
    editor = block.editor
    assert editor is not None
    editor.selectAll()
    qtbot.keyClicks(editor, "Name a vegetable.")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    wait_reply_done(qtbot, window)
    path = window.current_path
    assert path[0].content == "Name a vegetable." and path[0].id != user.id
    assert path[0].parent_id == user.parent_id
    assert path[-1].role == "assistant" and path[-1].status == "complete"
    tree = window.store.tree(user.conversation_id)
    assert [m.content for m in tree.siblings(user.id)] == ["Name a fruit.", "Name a vegetable."]
    label = child(block_of(window, path[0].id), QLabel, "versionLabel")
    assert label.text() == "2/2"  # type: ignore[attr-defined]


def test_delete_a_message_and_what_follows(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "One.")
    wait_reply_done(qtbot, window)
    send(qtbot, window, "Two.")
    wait_reply_done(qtbot, window)
    second_user = window.current_path[2]
    click(qtbot, child(block_of(window, second_user.id), QWidget, "deleteButton"))
    assert [m.content for m in window.current_path][:1] == ["One."]
    assert len(window.current_path) == 2
    assert window.chat_view.message_block(second_user.id) is None


def test_events_with_stale_request_ids_are_ignored(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Say hello.")
    wait_reply_done(qtbot, window)
    before = window.store.active_path(window.current_conversation_id or 0)
    worker = window.inference.worker
    stats = GenerationStats(1, 0, 1.0, 1.0, 1.0, 1, 1.0, 1.0, StopReason.END_OF_TURN, 7)
    fake = GenerationDone(text="STALE", tail="STALE", tokens=(1,), stats=stats)
    for request_id in (0, 1, 99):  # never sent, already finished, not yet sent
        worker.tokens.emit(request_id, "STALE", ())
        worker.finished.emit(request_id, fake)
        worker.failed.emit(request_id, "STALE failure")
    assert window.store.active_path(window.current_conversation_id or 0) == before
    assert "STALE" not in block_of(window, before[-1].id).text.toPlainText()


# ----- conversations -----


def test_new_chat_and_switching_conversations(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "First chat.")
    wait_reply_done(qtbot, window)
    first = window.current_conversation_id
    activate(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.current_conversation_id is None
    assert window.chat_view.shown_path == ()
    send(qtbot, window, "Second chat.")
    wait_reply_done(qtbot, window)
    second = window.current_conversation_id
    assert second not in (None, first)
    sidebar = window.conversation_list
    row = sidebar.model.row_of(first or 0)
    assert row is not None
    view = sidebar.view
    qtbot.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        pos=view.visualRect(sidebar.model.index(row)).center(),
    )
    assert window.current_conversation_id == first
    assert window.current_path[0].content == "First chat."


def test_switching_conversation_mid_reply_saves_the_partial_reply_as_cancelled(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    window.sampling_panel.value_control("max_tokens").spin.setValue(16)
    send(qtbot, window, "Hi.")
    wait_reply_done(qtbot, window)
    other = window.current_conversation_id
    window.new_chat()
    send(qtbot, window, COUNT)
    wait_streaming(qtbot, window)
    counting = window.current_conversation_id
    reply_id = window.current_path[-1].id
    window.conversation_list.conversationSelected.emit(other)  # as a click would
    assert window.current_conversation_id == other
    assert window.active_request is None
    assert not window.composer.is_busy
    wait_reply_done(qtbot, window)
    reply = window.store.message(reply_id)
    assert reply.status == "cancelled" and reply.content.strip()
    window.open_conversation(counting or 0)
    assert window.current_path[-1].id == reply_id
    assert window.chat_view.shown_path[-1].status == "cancelled"


def test_switching_back_restores_the_kv_cache(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    window.sampling_panel.set_system_prompt("You are a helpful guide to lighthouses.")
    window.sampling_panel.flush_pending()
    send(qtbot, window, "Tell me one fact about lighthouses on rocky northern coasts.")
    wait_reply_done(qtbot, window)
    lighthouse = window.current_conversation_id
    first = window.current_path[-1]
    window.new_chat()
    send(qtbot, window, "How long does bread rise?")
    wait_reply_done(qtbot, window)
    window.open_conversation(lighthouse or 0)
    qtbot.waitUntil(lambda: window.last_restored is not None, timeout=TIMEOUT_MS)
    assert window.last_restored is not None and window.last_restored[0] == lighthouse
    assert window.last_restored[1] > 0
    send(qtbot, window, "And another?")
    wait_reply_done(qtbot, window)
    follow_up = window.current_path[-1]
    assert first.stats is not None and follow_up.stats is not None
    assert follow_up.stats["cached_tokens"] >= first.stats["prompt_tokens"]


def test_settings_are_per_conversation_with_a_default(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Hello.")
    wait_reply_done(qtbot, window)
    first = window.current_conversation_id or 0
    window.sampling_panel.value_control("top_k").spin.setValue(7)
    window.new_chat()
    assert window.sampling_panel.settings() == SHORT
    window.open_conversation(first)
    assert window.sampling_panel.settings().top_k == 7
    assert window.store.conversation_settings(first).top_k == 7
    click(qtbot, child(window, QPushButton, "useDefaultButton"))
    assert window.sampling_panel.settings() == SHORT
    assert window.store.conversation(first).settings is None


def test_a_slider_moved_mid_reply_steers_the_rest_of_it(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    send(qtbot, window, COUNT)
    wait_streaming(qtbot, window)
    active = window.active_reply
    assert active is not None
    slider = window.sampling_panel.value_control("temperature").slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_PageUp)  # a keyboard nudge, as a person would
    moved = window.sampling_panel.settings().temperature
    assert moved > 0
    assert active.holder.get().temperature == pytest.approx(moved)
    window.stop_reply()
    wait_reply_done(qtbot, window)
    reply = window.store.message(active.message.id)
    assert reply.settings is not None and reply.settings.temperature == pytest.approx(moved)
    qtbot.waitUntil(  # the chat's own settings are saved once the slider rests
        lambda: (
            window.store.conversation_settings(reply.conversation_id).temperature
            == pytest.approx(moved)
        )
    )


def test_restart_finds_everything(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Remember the lighthouse.")
    wait_reply_done(qtbot, window)
    window.sampling_panel.value_control("min_p").spin.setValue(0.2)
    conversation_id = window.current_conversation_id
    path = window.current_path
    paths = window._paths
    window.close()

    again = make_window(paths=paths)
    assert again.current_conversation_id == conversation_id
    assert [m.content for m in again.current_path] == [m.content for m in path]
    assert again.current_path[-1].stats == path[-1].stats
    assert again.sampling_panel.settings().min_p == pytest.approx(0.2)
    assert again.conversation_list.model.rowCount() == 1
    block = block_of(again, path[-1].id)
    assert path[-1].content.strip()[:10] in block.text.toPlainText()


def test_closing_mid_reply_saves_the_partial_reply_and_exits_fast(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(settings=LONG, model=starter_model)
    send(qtbot, window, COUNT)
    wait_streaming(qtbot, window)
    active = window.active_reply
    assert active is not None
    paths = window._paths
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 2.0
    assert window.inference.qthread.isFinished()
    with Store.open(paths) as store:
        reply = store.message(active.message.id)
    assert reply.status == "cancelled" and reply.content.strip()
    assert reply.stats is not None  # the worker's last event was saved, not just the text
    assert reply.stats["stop_reason"] == "cancelled"


def test_search_opens_the_conversation_at_the_hit(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Tell me about zeppelins.")
    wait_reply_done(qtbot, window)
    zeppelin = window.current_conversation_id
    window.new_chat()
    send(qtbot, window, "Tell me about bread.")
    wait_reply_done(qtbot, window)
    activate(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    field = child(window, QLineEdit, "searchField")
    qtbot.keyClicks(field, "zeppel")
    qtbot.waitUntil(lambda: window.conversation_list.results.rowCount() > 0)
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert window.current_conversation_id == zeppelin
    assert window.current_path[0].content == "Tell me about zeppelins."


def test_deleting_the_open_conversation_and_undo(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Keep me.")
    wait_reply_done(qtbot, window)
    conversation_id = window.current_conversation_id or 0
    window.conversation_list.delete_conversation(conversation_id)
    assert window.current_conversation_id is None
    click(qtbot, child(window, QPushButton, "undoDeleteButton"))
    assert window.current_conversation_id == conversation_id
    assert window.current_path[0].content == "Keep me."


def test_presets_and_defaults_are_saved_in_the_store(
    qtbot: QtBot, make_window: MakeWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    panel = window.sampling_panel
    panel.value_control("temperature").spin.setValue(0.45)
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Calm", True)))
    click(qtbot, child(window, QPushButton, "savePresetButton"))
    assert window.store.presets() == {"Calm": panel.settings()}
    assert panel.preset_name == "Calm"
    panel.set_system_prompt("Be brief.")
    click(qtbot, child(window, QPushButton, "makeDefaultButton"))
    assert window.store.default_settings().temperature == pytest.approx(0.45)
    assert window.store.default_system_prompt() == "Be brief."
    click(qtbot, child(window, QPushButton, "deletePresetButton"))
    assert window.store.presets() == {}
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Balanced", True)))
    click(qtbot, child(window, QPushButton, "savePresetButton"))
    assert "built-in" in window.notice_text


# ----- export and import -----


def test_export_import_round_trip_from_the_menus(
    qtbot: QtBot,
    make_window: MakeWindow,
    starter_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name a bird.")
    wait_reply_done(qtbot, window)
    window.regenerate(window.current_path[-1].id, None)
    wait_reply_done(qtbot, window)
    window.new_chat()
    send(qtbot, window, "Name a tree.")
    wait_reply_done(qtbot, window)

    target = tmp_path / "chats.json"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **k: (str(target), "Hearth JSON (*.json)")),
    )
    with qtbot.waitSignal(window.chat_files.exported, timeout=TIMEOUT_MS):
        window.findChild(QObject, "exportAllAction").trigger()  # type: ignore[union-attr]
    assert target.is_file()
    markdown = tmp_path / "bird.md"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **k: (str(markdown), "Markdown (*.md)")),
    )
    with qtbot.waitSignal(window.chat_files.exported, timeout=TIMEOUT_MS):
        window.findChild(QObject, "exportChatAction").trigger()  # type: ignore[union-attr]
    assert "Name a tree." in markdown.read_text(encoding="utf-8")

    fresh = make_window()
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    with qtbot.waitSignal(fresh.chat_files.imported, timeout=TIMEOUT_MS) as imported:
        fresh.findChild(QObject, "importAction").trigger()  # type: ignore[union-attr]
    assert len(imported.args[0]) == 2
    assert fresh.current_conversation_id == imported.args[0][0].id  # the first one is opened
    assert fresh.conversation_list.model.rowCount() == 2

    def shape(store: Store) -> list[tuple[str, list[tuple[str, str, object, object]]]]:
        out = []
        for conversation in sorted(store.list_conversations(), key=lambda c: c.title):
            messages = store.messages(conversation.id)
            out.append(
                (
                    conversation.title,
                    [(m.role, m.content, m.settings, m.seed) for m in messages],
                )
            )
        return out

    assert shape(fresh.store) == shape(window.store)
    birds = next(c for c in fresh.store.list_conversations() if c.title == "Name a bird.")
    tree = fresh.store.tree(birds.id)
    user = tree.children(None)[0]
    assert len(tree.children(user.id)) == 2  # both versions of the reply came back


def test_import_of_a_bad_file_is_reported(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    bad = tmp_path / "notes.json"
    bad.write_text("{not json", encoding="utf-8")
    with (
        qtbot.assertNotEmitted(window.chat_files.imported),
        qtbot.waitSignal(window.chat_files.failed, timeout=TIMEOUT_MS),
    ):
        window.import_chats(bad)
    assert window.store.list_conversations() == ()
    assert "notes.json" in window.notice_text


# ----- draft counter and context meter -----


def test_draft_tokens_are_counted_while_typing(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    field = composer_input(window)
    field.setFocus()
    qtbot.keyClicks(field, "How many tokens is this draft?")
    label = child(window, QLabel, "draftTokenLabel")
    qtbot.waitUntil(lambda: any(ch.isdigit() for ch in label.text()), timeout=TIMEOUT_MS)  # type: ignore[attr-defined]
    meter = child(window, QWidget, "contextMeter")
    assert meter.accessibleName()


def test_the_draft_shows_as_the_models_tokens(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    strip = window.composer.token_strip
    assert strip.isHidden()
    child(window, QWidget, "showTokensButton").click()  # type: ignore[attr-defined]
    assert strip.isVisible()
    field = composer_input(window)
    field.setFocus()
    qtbot.keyClicks(field, "unbelievable <|im_end|>")
    label = child(window, QLabel, "draftTokenLabel")
    # The pieces and the count are two signals: wait for both (the label says "…" between).
    qtbot.waitUntil(
        lambda: len(strip.pieces) > 3 and label.text()[:1].isdigit(),  # type: ignore[attr-defined]
        timeout=TIMEOUT_MS,
    )
    text = "".join(piece for _id, piece in strip.pieces)
    assert text == "unbelievable <|im_end|>"  # the tokens spell the draft exactly
    assert len(strip.pieces) >= 4  # "unbelievable" is more than one token
    # Typed markers are plain text, never the model's end-of-turn control token.
    end_of_turn = window.token_counter.worker._tokenizer.tokenize(  # type: ignore[union-attr]
        "<|im_end|>", parse_special=True
    )
    assert len(end_of_turn) == 1
    assert end_of_turn[0] not in {token for token, _piece in strip.pieces}
    assert "id " in strip.tooltip_for(0)
    assert label.text().startswith(f"{len(strip.pieces)} token")  # type: ignore[attr-defined]
    assert "|" in strip.accessibleDescription()


def test_sending_appends_without_reading_the_chat_back(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Say one word.")
    wait_reply_done(qtbot, window)
    first_blocks = [window.chat_view.message_block(m.id) for m in window.current_path]
    reads: list[int] = []
    original = window.store.snapshot
    monkeypatch.setattr(window.store, "snapshot", lambda cid: (reads.append(cid), original(cid))[1])
    send(qtbot, window, "And another.")
    wait_reply_done(qtbot, window)
    assert reads == []  # sending and finishing never read the conversation back
    path = window.current_path
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert path == original(window.current_conversation_id).path  # in memory == stored
    # the earlier messages' blocks were kept, not rebuilt
    assert [window.chat_view.message_block(m.id) for m in path[:2]] == first_blocks


# ----- where the model runs: load options, placement, the machine -----


def open_load_options(qtbot: QtBot, window: MainWindow) -> LoadOptionsDialog:
    """Through the Model menu; the dialog opens once the machine report is in."""
    action = window.findChild(QObject, "loadOptionsAction")
    assert action is not None and action.isEnabled()  # type: ignore[attr-defined]
    action.trigger()  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: window.load_options_dialog is not None, timeout=TIMEOUT_MS)
    dialog = window.load_options_dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    return dialog


def choose(combo: QWidget, value: str) -> None:
    assert isinstance(combo, QComboBox)
    combo.setCurrentIndex(combo.findData(value))


def test_load_options_are_saved_per_model_and_reload_it(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    first = window.model
    assert first is not None and first.n_ctx == 1024
    dialog = open_load_options(qtbot, window)
    assert child(dialog, QAbstractSpinBox, "contextSpin").value() == 1024  # type: ignore[attr-defined]
    child(dialog, QAbstractSpinBox, "contextSpin").setValue(512)  # type: ignore[attr-defined]
    choose(child(dialog, QComboBox, "kvTypeKCombo"), "q8_0")
    choose(child(dialog, QComboBox, "kvTypeVCombo"), "q8_0")
    assert child(dialog, QComboBox, "flashAttnCombo").currentData() == "on"  # type: ignore[attr-defined]
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT_MS):
        click(qtbot, child(dialog, QPushButton, "loadOptionsOkButton"))
    model = window.model
    assert model is not None and model is not first
    assert model.n_ctx == 512
    assert model.options is not None
    assert (model.options.type_k, model.options.type_v) == ("q8_0", "q8_0")
    assert model.flash_attn == "on"
    assert model.n_threads == 1  # what the dialog did not touch stays
    saved = LoadOptionsStore(window._paths.config).get(starter_model)
    assert saved == LoadOptions(
        n_ctx=512, n_threads=1, type_k="q8_0", type_v="q8_0", flash_attn="on"
    )
    qtbot.waitUntil(lambda: window.load_options_dialog is None)

    # Another model keeps its own options; the saved ones come back on the next load.
    paths = window._paths
    window.close()
    again = make_window(paths=paths, model=starter_model)
    assert again.model is not None and again.model.n_ctx == 512
    assert again.model.options is not None and again.model.options.type_k == "q8_0"


def test_cancel_in_the_load_options_changes_nothing(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    model = window.model
    dialog = open_load_options(qtbot, window)
    child(dialog, QAbstractSpinBox, "contextSpin").setValue(256)  # type: ignore[attr-defined]
    click(qtbot, child(dialog, QPushButton, "loadOptionsCancelButton"))
    qtbot.waitUntil(lambda: window.load_options_dialog is None)
    assert window.model is model and not window.is_loading
    assert LoadOptionsStore(window._paths.config).get(starter_model) is None


def test_load_options_need_a_model(make_window: MakeWindow) -> None:
    window = make_window()
    assert not window.findChild(QObject, "loadOptionsAction").isEnabled()  # type: ignore[union-attr]
    assert not child(window, QPushButton, "loadOptionsButton").isEnabled()


def test_the_sampling_panel_opens_the_load_options(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    click(qtbot, child(window, QPushButton, "loadOptionsButton"))
    qtbot.waitUntil(lambda: window.load_options_dialog is not None, timeout=TIMEOUT_MS)
    dialog = window.load_options_dialog
    assert dialog is not None
    slider = child(dialog, QWidget, "gpuLayersSlider")
    if not window.model.gpu_offload_supported:  # type: ignore[union-attr]
        assert not slider.isEnabled()
        assert "cannot use a GPU" in child(dialog, QLabel, "gpuNoteLabel").text()  # type: ignore[attr-defined]
    dialog.reject()


def test_the_status_bar_and_each_reply_say_where_it_ran(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    model, where = window.model, window.placement
    assert model is not None and where is not None
    if not model.gpu_offload_supported:  # this machine's build
        assert where.text == "CPU · 1 thread"
    assert child(window, QLabel, "backendLabel").text() == where.text  # type: ignore[attr-defined]
    assert child(window, QLabel, "modelBackendValue").text() == where.text  # type: ignore[attr-defined]
    send(qtbot, window, "Say hello in one short sentence.")
    wait_reply_done(qtbot, window)
    reply = window.current_path[-1]
    assert reply.stats is not None
    assert reply.stats["placement"] == where.text
    assert reply.stats["n_gpu_layers"] == where.n_gpu_layers
    assert reply.stats["n_layers_total"] == model.info.n_layer + 1
    line = child(block_of(window, reply.id), QLabel, "replyStatsLabel").text()  # type: ignore[attr-defined]
    assert line == reply_summary(reply)
    assert f"{where.text} · prefill " in line and " tokens/s · decode " in line


def test_a_gpu_out_of_memory_retry_is_told_in_the_notice_bar(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", n_layer=8, chat_template=CHATML_TEMPLATE)
    paths = app_paths(tmp_path / "gpu-home").ensure()
    gpu = FullGpu(fits=4)
    inference = InferenceThread(
        model_settings=LoadOptionsStore(paths.config), gpu_stand_in=gpu.stand_in()
    )
    window = make_window(paths=paths, inference=inference, model=model)
    assert gpu.asked == [9, 4]
    assert window.notice_text == (
        "GPU out of memory at 9 layers; loaded with 4 of 9 layers on the GPU."
    )
    assert child(window, QLabel, "backendLabel").text() == "GPU 4/9 + CPU"  # type: ignore[attr-defined]
    assert child(window, QLabel, "modelBackendValue").text() == "GPU 4/9 + CPU"  # type: ignore[attr-defined]
    send(qtbot, window, "hi")
    wait_reply_done(qtbot, window)
    reply = window.current_path[-1]
    assert reply.stats is not None and reply.stats["placement"] == "GPU 4/9 + CPU"
    assert reply.stats["n_gpu_layers"] == 4


def test_about_this_machine_shows_the_report_and_copies_it(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    window.findChild(QObject, "aboutMachineAction").trigger()  # type: ignore[union-attr]
    dialog = window.machine_report_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.is_ready, timeout=TIMEOUT_MS)
    text = dialog.text
    assert text.startswith("llama-cpp-python ")
    for expected in ("Backends:", "GPU offload:", "CPU features:", "RAM:"):
        assert expected in text
    view = child(dialog, QPlainTextEdit, "machineReportView")
    assert view.isReadOnly()  # type: ignore[attr-defined]
    QGuiApplication.clipboard().clear()
    click(qtbot, child(dialog, QPushButton, "copyMachineReportButton"))
    assert QGuiApplication.clipboard().text() == text
    assert "Copied" in child(dialog, QLabel, "machineReportStatusLabel").text()  # type: ignore[attr-defined]
    for widget in dialog.findChildren(QAbstractButton):
        assert widget.objectName() and widget.accessibleName(), widget


def test_process_memory_is_the_resident_set() -> None:
    memory = process_memory()
    assert memory is not None
    used, current = memory
    assert current and 10 * 2**20 < used < 64 * 2**30


def test_the_model_manager_loads_a_picked_model_in_the_window(
    qtbot: QtBot,
    make_window: MakeWindow,
    tmp_path: Path,
    starter_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "person"  # no other apps' models here: only Hearth's folder counts
    monkeypatch.setenv("HOME", str(home))
    for name in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    window = make_window()
    os.link(starter_model, window._paths.models / starter_model.name)
    window.welcome_panel.findChild(QPushButton, "welcomeBrowseButton").click()
    manager = window.model_manager
    assert manager is not None and manager.isVisible()
    library = manager.library
    qtbot.waitUntil(lambda: bool(library.models) and not library.is_scanning, timeout=TIMEOUT_MS)
    assert library.select_path(window._paths.models / starter_model.name)
    library.findChild(QPushButton, "loadLibraryModelButton").click()
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT_MS)
    assert window.model is not None and window.model.info.path.name == starter_model.name
