"""The store on a real full disk and a real read-only disk (a small tmpfs, mounted as root)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from app.core.chats.faults import damaged_message, write_fault
from app.core.chats.store import DB_FILE_NAME, Store
from app.core.errors import ReadOnlyStorageError, StorageFullError, StoreError
from tests.mounts import fill_disk, remount, tiny_tmpfs


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tiny_tmpfs(tmp_path / "disk", "1m") as folder:
        yield folder


def seeded(db: Path) -> int:
    """A database with one conversation of two messages; returns the conversation id."""
    with Store(db) as store:
        chat = store.create_conversation("Soup")
        store.add_user_message(chat.id, "How long to boil an egg?")
        store.add_user_message(chat.id, "And a duck egg?")
        return chat.id


def test_a_full_disk_at_start_is_named_as_full_not_as_an_unreadable_database(disk: Path) -> None:
    db = disk / DB_FILE_NAME
    chat = seeded(db)
    filler = fill_disk(disk)

    with pytest.raises(StorageFullError) as caught:
        Store(db)
    message = str(caught.value)
    assert f"The disk holding {disk} is full" in message
    assert "unreadable" not in message and "damaged" not in message
    assert caught.value.path == disk

    filler.unlink()  # space comes back: the database was intact all along
    with Store(db) as store:
        assert [m.content for m in store.messages(chat)] == [
            "How long to boil an egg?",
            "And a duck egg?",
        ]


def test_a_disk_that_fills_while_running_raises_a_typed_error_and_stores_nothing_half(
    disk: Path,
) -> None:
    db = disk / DB_FILE_NAME
    chat = seeded(db)
    with Store(db) as store:
        fill_disk(disk)
        stored = len(store.messages(chat))
        text = "a long message " * 300
        with pytest.raises(StorageFullError) as caught:
            for _ in range(500):  # the WAL may have room for a few before the disk says no
                store.add_user_message(chat, text)
                stored += 1
        assert "is full" in str(caught.value) and str(disk) in str(caught.value)
        # every message the store accepted is there, the refused one is not: nothing half
        assert len(store.messages(chat)) == stored

        (disk / "filler").unlink()
        kept = store.add_user_message(chat, "saved once there is room")  # not stuck in a txn
        assert store.messages(chat)[-1] == kept
        assert [h.message_id for h in store.search("room")] == [kept.id]


def test_a_streaming_update_on_a_full_disk_raises_the_same_typed_error(disk: Path) -> None:
    db = disk / DB_FILE_NAME
    chat = seeded(db)
    with Store(db) as store:
        leaf = store.messages(chat)[-1]
        reply = store.start_reply(leaf.id, model="m.gguf", settings=store.default_settings())
        fill_disk(disk)
        with pytest.raises(StorageFullError):
            for n in range(500):
                store.update_streaming_reply(reply.id, "word " * (400 * (n + 1)))


def test_a_read_only_disk_refuses_writes_clearly_and_still_reads(disk: Path) -> None:
    db = disk / DB_FILE_NAME
    chat = seeded(db)
    remount(disk, read_only=True)
    try:
        with pytest.raises(ReadOnlyStorageError, match=f"{disk} is read-only"):
            Store(db)
        with Store(db, read_only=True) as store:  # no -wal/-shm can be made: immutable
            assert [c.title for c in store.list_conversations()] == ["Soup"]
            assert [h.conversation_id for h in store.search("duck")] == [chat]
            with pytest.raises(ReadOnlyStorageError):
                store.add_user_message(chat, "not on a read-only disk")
    finally:
        remount(disk, read_only=False)


def test_read_only_open_of_a_live_database_sees_the_latest_writes(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as writer:
        chat = writer.create_conversation("Live")
        writer.add_user_message(chat.id, "still in the WAL")
        with Store(db, read_only=True) as reader:
            assert [m.content for m in reader.messages(chat.id)] == ["still in the WAL"]


def test_read_only_open_of_a_missing_database_says_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="There is no database"):
        Store(tmp_path / DB_FILE_NAME, read_only=True)
    assert not (tmp_path / DB_FILE_NAME).exists()


def test_a_damaged_file_names_the_backup_folder_and_hearth_repair(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    db.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreError) as caught:
        Store(db)
    assert str(caught.value) == damaged_message(db, "file is not a database")
    assert f"{tmp_path / 'backups'}" in str(caught.value)
    assert "`hearth repair`" in str(caught.value)


def test_write_fault_maps_os_and_sqlite_errors_as_backups_and_repair_need(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    full = write_fault(
        OSError(errno.ENOSPC, "No space left on device"), db, what="no backup", path=tmp_path
    )
    assert isinstance(full, StorageFullError) and "no backup" in str(full)
    read_only = write_fault(
        OSError(errno.EROFS, "Read-only file system"), db, what="no backup", path=tmp_path
    )
    assert isinstance(read_only, ReadOnlyStorageError)
    sqlite_full: sqlite3.Error | None = None
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA max_page_count = 2")  # a real "database or disk is full"
        try:
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 10000,))
        except sqlite3.Error as exc:
            sqlite_full = exc
    assert isinstance(
        write_fault(sqlite_full, db, what="no backup", path=tmp_path), StorageFullError
    )
    other = write_fault(OSError(errno.EIO, "I/O error"), db, what="no backup", path=tmp_path)
    assert type(other) is StoreError and str(other).startswith("no backup: ")
