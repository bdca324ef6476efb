"""Rolling backups of the database with SQLite's online backup API.

`Store.open` calls `backup_if_due` at start-up: when the newest backup is more than a day
old, a consistent copy of the live database (readers and a writer may be busy meanwhile)
is written to `<data>/backups/hearth-YYYYMMDD-HHMMSS.sqlite3`, checked, and only then
given its name; the oldest beyond `KEEP` are removed. A copy that fails its integrity
check is not kept, so a damaged database never pushes out the good backups.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from app.core.chats import purge
from app.core.chats.faults import backup_folder, write_fault
from app.core.errors import DatabaseDamagedError

log = logging.getLogger(__name__)

KEEP = 3
MAX_AGE_S = 24 * 60 * 60
PREFIX = "hearth-"
SUFFIX = ".sqlite3"
_STAMP = "%Y%m%d-%H%M%S"

__all__ = [
    "KEEP",
    "MAX_AGE_S",
    "Backup",
    "backup_folder",
    "backup_if_due",
    "clear_backups",
    "erase_from_backups",
    "list_backups",
    "make_backup",
    "total_size",
]


@dataclass(frozen=True)
class Backup:
    """One backup file: where, how big (bytes) and when it was taken (Unix time)."""

    path: Path
    size: int
    created_at: float


def list_backups(folder: Path) -> tuple[Backup, ...]:
    """The backups in `folder`, newest first (none if the folder does not exist)."""
    found: list[Backup] = []
    with suppress(OSError):
        for entry in folder.iterdir():
            name = entry.name
            if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
                continue
            try:
                created = time.mktime(time.strptime(name[len(PREFIX) : -len(SUFFIX)], _STAMP))
                size = entry.stat().st_size
            except (ValueError, OSError):
                continue
            found.append(Backup(entry, size, created))
    return tuple(sorted(found, key=lambda b: (b.created_at, b.path.name), reverse=True))


def total_size(folder: Path) -> int:
    """Bytes used by the backups in `folder`."""
    return sum(b.size for b in list_backups(folder))


def clear_backups(folder: Path) -> int:
    """Delete every backup in `folder` (a person freeing space); returns the bytes freed.

    A file that cannot be deleted is logged and left (and not counted).
    """
    freed = 0
    for backup in list_backups(folder):
        try:
            backup.path.unlink()
        except OSError as exc:
            log.warning("cannot delete the backup %s: %s", backup.path, exc)
        else:
            freed += backup.size
    return freed


def backup_if_due(
    db_path: Path, *, max_age: float = MAX_AGE_S, keep: int = KEEP, now: float | None = None
) -> Backup | None:
    """Back up `db_path` if its newest backup is older than `max_age`; else None."""
    now = time.time() if now is None else now
    newest = list_backups(backup_folder(db_path))
    if newest and now - newest[0].created_at < max_age:
        return None
    return make_backup(db_path, keep=keep, now=now)


def make_backup(db_path: Path, *, keep: int = KEEP, now: float | None = None) -> Backup:
    """Copy the live database into its backup folder and drop the oldest beyond `keep`.

    Raises:
        StorageFullError / ReadOnlyStorageError: the copy could not be written (no
            partial file is left).
        DatabaseDamagedError: the copy is not intact (it is not kept).
    """
    now = float(int(time.time() if now is None else now))  # the name keeps whole seconds
    folder = backup_folder(db_path)
    final = folder / f"{PREFIX}{time.strftime(_STAMP, time.localtime(now))}{SUFFIX}"
    partial = folder / f".{final.name}.partial"
    what = f"no backup of the database could be written to {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _copy(db_path, partial)
        os.replace(partial, final)
    except (OSError, sqlite3.Error) as exc:
        _discard(partial)
        raise write_fault(exc, db_path, what=what, path=folder) from exc  # damage: the source
    except BaseException:
        _discard(partial)
        raise
    for old in list_backups(folder)[max(keep, 1) :]:
        with suppress(OSError):
            old.path.unlink()
    log.info("backed up the database to %s", final)
    return Backup(final, final.stat().st_size, now)


def erase_from_backups(db_path: Path, conversation_ids: Sequence[int]) -> int:
    """Erase conversations from every backup too, as `Store.purge_deleted` does live.

    Delete means delete: a conversation erased from the database must not live on for days
    in the backups taken before. Returns how many backups held any of them; a backup that
    cannot be changed is logged and left.
    """
    if not conversation_ids:
        return 0
    marks = ", ".join("?" * len(conversation_ids))
    changed = 0
    for backup in list_backups(backup_folder(db_path)):
        try:
            with closing(sqlite3.connect(backup.path, isolation_level=None)) as conn:
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute(
                    f"DELETE FROM conversations WHERE id IN ({marks})", tuple(conversation_ids)
                )
                if cur.rowcount:
                    purge.drop_index_traces(conn)
                conn.execute("COMMIT")
                if cur.rowcount:
                    changed += 1
                    purge.compact(conn)
        except sqlite3.Error as exc:
            log.warning("cannot erase deleted conversations from %s: %s", backup.path, exc)
    return changed


def _copy(db_path: Path, target: Path) -> None:
    """One consistent copy with `Connection.backup`, checked with `quick_check`."""
    source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    with closing(source), closing(sqlite3.connect(target)) as dest:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        verdict = dest.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise DatabaseDamagedError(
            f"The backup of {db_path} failed its integrity check ({verdict}); it was not "
            "kept, and the older backups were left alone. Run `hearth repair`.",
            path=db_path,
        )


def _discard(path: Path) -> None:
    with suppress(OSError):
        path.unlink()
    for extra in ("-journal", "-wal", "-shm"):
        with suppress(OSError):
            path.with_name(path.name + extra).unlink()
