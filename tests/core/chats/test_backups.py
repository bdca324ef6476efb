"""Rolling database backups with SQLite's online backup API, on real files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.core.chats import backups
from app.core.chats.store import DB_FILE_NAME, Store
from app.core.errors import DatabaseDamagedError, StorageFullError
from app.core.paths import app_paths
from tests.mounts import fill_disk, tiny_tmpfs

DAY = 24 * 60 * 60
T0 = 1_780_000_000.0


def titles_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT title FROM conversations ORDER BY id")]


def test_a_backup_is_a_consistent_copy_of_the_live_database(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        store.create_conversation("First")
        backup = store.backup_now()
        store.create_conversation("After the backup")
        assert backup.path.parent == tmp_path / "backups"
        assert backup.size == backup.path.stat().st_size > 0
        assert titles_in(backup.path) == ["First"]
        assert store.backups() == (backup,)
    assert not list((tmp_path / "backups").glob(".*partial*"))


def test_backups_are_taken_when_a_day_old_and_only_the_newest_three_are_kept(
    tmp_path: Path,
) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        store.create_conversation("Soup")
    folder = backups.backup_folder(db)
    assert backups.backup_if_due(db, now=T0) is not None  # none yet: due
    assert backups.backup_if_due(db, now=T0 + DAY - 60) is None  # less than a day old
    taken = [backups.backup_if_due(db, now=T0 + DAY * n) for n in (1, 2, 3, 4)]
    assert all(b is not None for b in taken)
    kept = backups.list_backups(folder)
    assert [b.created_at for b in kept] == [T0 + DAY * n for n in (4, 3, 2)]
    assert backups.total_size(folder) == sum(b.size for b in kept)
    assert sorted(p.name for p in folder.iterdir()) == sorted(b.path.name for b in kept)


def test_opening_the_store_at_start_up_takes_the_daily_backup(tmp_path: Path) -> None:
    paths = app_paths(tmp_path / "home")
    with Store.open(paths) as store:
        store.create_conversation("Soup")
        assert len(store.backups()) == 1
    with Store.open(paths) as store:  # the same day: no second backup
        assert len(store.backups()) == 1
    with Store.open(paths, read_only=True) as store:
        assert len(store.backups()) == 1


def test_a_damaged_database_never_pushes_out_the_good_backups(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        chat = store.create_conversation("Soup")
        for n in range(40):
            store.add_user_message(chat.id, f"message {n} " + "x" * 3000)
    good = backups.make_backup(db, now=T0)
    data = bytearray(db.read_bytes())
    page = 4096 * 5  # a page of message rows
    data[page : page + 4096] = b"\xff" * 4096
    db.write_bytes(bytes(data))

    with pytest.raises(DatabaseDamagedError, match="failed its integrity check"):
        backups.make_backup(db, now=T0 + DAY)
    assert backups.list_backups(backups.backup_folder(db)) == (good,)


def test_a_backup_on_a_full_disk_raises_and_leaves_no_partial_file(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "1m") as disk:
        db = disk / DB_FILE_NAME
        with Store(db) as store:
            chat = store.create_conversation("Soup")
            for n in range(10):
                store.add_user_message(chat.id, f"message {n} " + "x" * 3000)
            fill_disk(disk)
            with pytest.raises(StorageFullError, match="no backup of the database"):
                store.backup_now()
        assert not any((disk / "backups").iterdir())


def test_clearing_the_backups_deletes_only_them_and_says_how_much_was_freed(
    tmp_path: Path,
) -> None:
    db = tmp_path / DB_FILE_NAME
    with Store(db) as store:
        store.create_conversation("Kept")
        made = [backups.make_backup(db, now=T0 + n * DAY) for n in range(2)]
        other = tmp_path / "backups" / "notes.txt"
        other.write_text("not a backup")
        freed = backups.clear_backups(backups.backup_folder(db))
        assert freed == sum(b.size for b in made) > 0
        assert store.backups() == () and other.exists()
        assert [c.title for c in store.list_conversations()] == ["Kept"]
    assert backups.clear_backups(tmp_path / "nowhere") == 0


def test_a_backup_that_meets_a_damaged_page_names_the_live_database(tmp_path: Path) -> None:
    from tests.core.chats.test_repair import build, damage_page_holding

    db = tmp_path / DB_FILE_NAME
    build(db)
    damage_page_holding(db, "chat2msg1 ")
    with pytest.raises(DatabaseDamagedError) as caught:
        backups.make_backup(db, now=T0)
    message = str(caught.value)
    assert message.startswith(f"The database {db} is damaged")
    assert ".partial" not in message and "backups/backups" not in message
    assert caught.value.path == db
    assert list((tmp_path / "backups").iterdir()) == []
