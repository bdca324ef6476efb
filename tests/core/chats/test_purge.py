"""Delete means delete: after a purge no byte of a deleted message is left in the files."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from app.core.chats import purge
from app.core.chats.store import DB_FILE_NAME, PURGE_AFTER_S, Store
from app.core.paths import app_paths

MARKER = "Zanzibarquokka7319"  # one token, in no dictionary: any trace of it is ours
KEPT = "Kilimanjarobonobo2468"


def traces(folder: Path, text: str) -> list[str]:
    """Files in `folder` (the database, its WAL, ...) holding `text` in any letter case.

    The full-text index stores tokens folded to lower case, so both spellings are sought.
    """
    needles = {text.encode(), text.lower().encode(), text.upper().encode()}
    return [
        p.name
        for p in sorted(folder.iterdir())
        if p.is_file() and any(n in p.read_bytes() for n in needles)
    ]


def fill(store: Store, marker: str, *, replies: int = 3, repeat: int = 40) -> int:
    chat = store.create_conversation(f"About {marker}")
    for n in range(replies):
        question = store.add_user_message(chat.id, f"Tell me about {marker}, part {n}.")
        reply = store.start_reply(question.id, model="m.gguf", settings=store.default_settings())
        store.update_streaming_reply(reply.id, f"{marker} is")
        store.finish_reply(
            reply.id, f"{marker} is a word made up for test {n}. " * repeat, "complete"
        )
    return chat.id


def test_a_purged_conversation_leaves_no_trace_in_the_database_or_its_wal(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        kept = fill(store, KEPT)
        gone = fill(store, MARKER)
        store.set_system_prompt(gone, f"Speak of {MARKER}.")
        assert store.search(MARKER)
        backup = store.backup_now()  # yesterday's backup, taken before the delete
        store.delete_conversation(gone)
        assert traces(tmp_path, MARKER), "the bin only hides a conversation; it is still there"

        assert store.purge_deleted() == 1
        assert traces(tmp_path, MARKER) == []  # not in the tables, the index or the WAL
        assert not store.search(MARKER)
        assert [m.conversation_id for m in store.messages(kept)] == [kept] * 6
        assert store.search(KEPT)  # the kept conversation is still searchable
    assert traces(tmp_path, MARKER) == []
    assert traces(tmp_path, KEPT) != []
    assert traces(backup.path.parent, MARKER) == []  # erased from the backups too
    assert traces(backup.path.parent, KEPT) == [backup.path.name]


def test_purge_vacuums_when_much_of_the_file_is_free(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        fill(store, KEPT)
        ids = [fill(store, f"{MARKER}{n}", replies=4, repeat=400) for n in range(20)]
        for chat in ids:
            store.delete_conversation(chat)
        with closing(sqlite3.connect(db)) as other:  # everything into the main file first
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = db.stat().st_size
        assert before > 1024 * 1024
        store.purge_deleted()
        with store.transaction(write=False) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert db.stat().st_size < before / 3


def test_compact_leaves_a_mostly_full_file_alone(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        fill(store, KEPT)
        with closing(sqlite3.connect(db)) as other:
            assert purge.compact(other) is False


def test_opening_the_store_erases_what_was_binned_before_the_undo_grace(tmp_path: Path) -> None:
    paths = app_paths(tmp_path / "home")
    clock_now = time.time()
    with Store.open(paths) as store:
        old = fill(store, MARKER)
        recent = fill(store, KEPT)
    with Store(paths.data / DB_FILE_NAME, clock=lambda: clock_now - PURGE_AFTER_S - 5) as store:
        store.delete_conversation(old)
    with Store(paths.data / DB_FILE_NAME) as store:
        store.delete_conversation(recent)  # still within the grace: Undo may still be offered

    with Store.open(paths) as store:
        assert [c.id for c in store.list_conversations(deleted=True)] == [recent]
    assert traces(paths.data, MARKER) == []
