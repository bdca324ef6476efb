"""Nothing is lost and nothing deleted lingers, in the real window with the real model: a
disk that fills mid-chat (a real tiny tmpfs) drops no typed or generated text, with one
notice each time; a deleted chat leaves no trace in the raw database file, its WAL or the
backups once its undo window is over."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QTimer, Slot
from pytestqt.qtbot import QtBot

from app.core.chats import backups
from app.core.chats.store import DB_FILE_NAME
from app.core.paths import app_paths
from app.ui.controllers.replies import KEPT
from app.ui.main_window import MainWindow
from tests.mounts import fill_disk, tiny_tmpfs
from tests.ui import test_main_window
from tests.ui.test_main_window import (
    COUNT,
    LONG,
    TIMEOUT_MS,
    MakeWindow,
    composer_input,
    send,
    wait_reply_done,
    wait_streaming,
)

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


class Notices(QObject):
    """Every notice the controllers sent, in order."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.said: list[str] = []
        for source in (window.replies, window.conversations, window.models):
            source.notice.connect(self.on_notice)
        window.conversation_list.errorOccurred.connect(self.on_notice)

    @Slot(str, bool)
    @Slot(str)
    def on_notice(self, text: str, _offer_open: bool = False) -> None:
        self.said.append(text)


def test_a_disk_that_fills_mid_chat_drops_nothing_typed_or_generated(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, tmp_path: Path
) -> None:
    with tiny_tmpfs(tmp_path / "disk", "2m") as disk:
        paths = app_paths(disk / "home").ensure()
        window = make_window(model=starter_model, paths=paths, settings=LONG)
        notices = Notices(window)

        # Typed on a full disk: Enter keeps the text in the composer, and says why once.
        filler = fill_disk(disk)
        typed = "Remember the milk, the eggs and the bread."
        send(qtbot, window, typed)
        assert window.composer.text() == typed
        assert len(notices.said) == 1 and "is full" in notices.said[0]
        assert window.notice_text == notices.said[0]
        assert window.current_path == ()
        filler.unlink()  # space is back: the same Enter now sends it
        composer_input(window).setFocus()
        send(qtbot, window, "")
        qtbot.waitUntil(lambda: window.active_request is not None, timeout=TIMEOUT_MS)
        assert [m.content for m in window.current_path if m.role == "user"] == [typed]
        assert window.composer.text() == ""

        # The disk fills while the reply streams: it goes on, on screen and in memory.
        window.stop_reply()
        wait_reply_done(qtbot, window)
        notices.said.clear()
        send(qtbot, window, COUNT)
        wait_streaming(qtbot, window)
        filler = fill_disk(disk)
        wait_reply_done(qtbot, window)
        reply = window.current_path[-1]
        assert reply.role == "assistant" and reply.status == "complete"
        assert len(reply.content) > 50
        assert len(notices.said) == 1 and notices.said[0].endswith(KEPT)
        assert "is full" in notices.said[0]
        assert window.replies.unsaved == 1
        shown = window.chat_view.message_block(reply.id)
        assert shown is not None
        stored = window.store.message(reply.id)
        assert stored.content != reply.content  # the store has only what fitted

        filler.unlink()  # space returns: the flush timer saves the whole reply
        qtbot.waitUntil(lambda: window.replies.unsaved == 0, timeout=TIMEOUT_MS)
        stored = window.store.message(reply.id)
        assert stored.content == reply.content and stored.status == "complete"
        assert len(notices.said) == 1
        window.close()


SECRET_WORDS = ("Quokkazebra", "Marmalightning", "Velvetornado")


def raw_files(folder: Path) -> dict[Path, bytes]:
    """The bytes of every file of the database, its WAL and shared memory, and backups."""
    found = [p for p in folder.iterdir() if p.name.startswith(DB_FILE_NAME)]
    found += list(backups.backup_folder(folder / DB_FILE_NAME).glob("*"))
    return {path: path.read_bytes() for path in found if path.is_file()}


def traces(folder: Path, needles: list[str]) -> list[str]:
    hits = []
    for path, data in raw_files(folder).items():
        lowered = data.lower()
        hits += [f"{n!r} in {path.name}" for n in needles if n.lower().encode() in lowered]
    return hits


def test_a_deleted_chat_leaves_no_trace_in_the_file_after_the_undo_window(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, tmp_path: Path
) -> None:
    paths = app_paths(tmp_path / "home").ensure()
    window = make_window(model=starter_model, paths=paths)
    secret = f"Tell me about {' '.join(SECRET_WORDS)} please."
    send(qtbot, window, secret)
    wait_reply_done(qtbot, window)
    doomed = window.current_conversation_id
    reply = window.current_path[-1].content
    assert doomed is not None and len(reply) > 20
    window.new_chat()
    send(qtbot, window, "Name a bird.")
    wait_reply_done(qtbot, window)
    kept = window.current_conversation_id
    window.store.backup_now()  # a backup holding the doomed chat, too
    needles = [secret, *SECRET_WORDS, reply[:40]]
    assert traces(paths.data, needles)  # the check can see the text while it is there

    sidebar = window.conversation_list
    sidebar.delete_conversation(doomed)
    timer = sidebar.findChild(QTimer, "purgeTimer")
    assert isinstance(timer, QTimer) and timer.isActive()
    timer.start(50)  # the real undo timer, shortened
    with qtbot.waitSignal(sidebar.purged, timeout=TIMEOUT_MS):
        pass
    assert traces(paths.data, needles) == []
    window.open_conversation(kept or 0)
    assert window.current_path[0].content == "Name a bird."
    window.close()
    assert traces(paths.data, needles) == []
