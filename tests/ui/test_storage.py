"""Storage in the window: Repair database… on a real file with a damaged page, and the
Storage dialog's sizes and Clear buttons (real backups, real KV snapshots)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from app.core.chats import backups
from app.core.chats.store import DB_FILE_NAME
from app.core.paths import app_paths
from app.core.units import format_bytes
from app.ui.controllers.storage import StorageController
from app.ui.main_window import MainWindow
from app.ui.storage_dialog import StorageDialog, snapshots_text
from tests.core.chats.test_repair import build, damage_page_holding
from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow, send, wait_reply_done

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


def storage_of(window: MainWindow) -> StorageController:
    found = window.findChild(StorageController, "storageController")
    assert isinstance(found, StorageController)
    return found


def test_repair_database_from_the_menu_recovers_the_readable_chats_and_reopens(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = app_paths(tmp_path / "home").ensure()
    db = paths.data / DB_FILE_NAME
    texts = build(db)
    damage_page_holding(db, "chat2msg1 ")
    window = make_window(paths=paths)
    storage = storage_of(window)
    asked: list[str] = []

    def answer_yes(*args: object, **_kwargs: object) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(answer_yes))
    action = window.findChild(QAction, "repairDatabaseAction")
    assert isinstance(action, QAction)
    with qtbot.waitSignal(storage.repaired, timeout=TIMEOUT_MS):
        action.trigger()
        assert storage.repairing  # off the GUI thread: the window is back at once
    assert asked and "damaged file aside" in asked[0]

    notice = window.notice_text
    assert notice.startswith(f"Repaired {db}.")
    assert "messages: " in notice and "lost" in notice
    [damaged] = list(paths.data.glob(f"{DB_FILE_NAME}.damaged-*[0-9]"))
    assert f"The damaged file was kept as {damaged}." in notice
    # The store the whole window holds reads the fresh file: every other chat is intact.
    assert len(window.store.list_conversations()) == len(texts)
    for conversation_id, expected in texts.items():
        if conversation_id == 3:  # chat 2, whose page was damaged
            continue
        window.open_conversation(conversation_id)
        assert [m.content for m in window.current_path] == expected
    assert window.current_conversation_id is not None


def test_repair_is_refused_while_a_reply_is_written(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(
        model=starter_model, settings=test_main_window.LONG.with_changes(max_tokens=200)
    )
    send(qtbot, window, test_main_window.COUNT)
    qtbot.waitUntil(lambda: window.active_request is not None, timeout=TIMEOUT_MS)
    assert storage_of(window).repair() is None
    assert "stop it (Esc) before repairing" in window.notice_text
    window.stop_reply()
    wait_reply_done(qtbot, window)
    assert window.store.list_conversations()  # the store was never closed


def test_the_storage_dialog_shows_and_clears_backups_and_kv_snapshots(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name a bird.")
    wait_reply_done(qtbot, window)
    with qtbot.waitSignal(window.kv_snapshots.usageChanged, timeout=TIMEOUT_MS):
        window.new_chat()  # leaving the chat keeps its KV cache as a snapshot
    used = window.kv_snapshots.used_bytes
    assert used > 0
    folder = backups.backup_folder(window.store.path)
    taken = backups.list_backups(folder)
    assert len(taken) == 1  # the start-up backup

    action = window.findChild(QAction, "storageAction")
    assert isinstance(action, QAction)
    action.trigger()
    dialog = window.findChild(StorageDialog, "storageDialog")
    assert isinstance(dialog, StorageDialog) and dialog.isVisible()
    assert dialog.backups_label.startswith("1 backup, ") and str(folder) in dialog.backups_label
    budget = window.kv_snapshots.budget_bytes
    assert dialog.snapshots_label == snapshots_text(used, budget)

    clear_backups = dialog.findChild(QPushButton, "clearBackupsButton")
    assert isinstance(clear_backups, QPushButton) and clear_backups.isEnabled()
    qtbot.mouseClick(clear_backups, Qt.MouseButton.LeftButton)
    freed = format_bytes(taken[0].size)
    assert dialog.result_text == f"Deleted the database backups: freed {freed}."
    assert backups.list_backups(folder) == ()
    assert dialog.backups_label.startswith("No backups yet")
    assert not clear_backups.isEnabled()

    clear_snapshots = dialog.findChild(QPushButton, "clearSnapshotsButton")
    assert isinstance(clear_snapshots, QPushButton) and clear_snapshots.isEnabled()
    with qtbot.waitSignal(window.kv_snapshots.usageChanged, timeout=TIMEOUT_MS):
        qtbot.mouseClick(clear_snapshots, Qt.MouseButton.LeftButton)
    assert window.kv_snapshots.used_bytes == 0
    assert dialog.result_text == f"Dropped the KV snapshots: freed {format_bytes(used)} of memory."
    assert dialog.snapshots_label == snapshots_text(0, budget)
    assert not clear_snapshots.isEnabled()
