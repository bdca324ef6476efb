"""SQLite failures turned into typed errors a person can act on.

A full disk must not read as a damaged database (at open SQLite may only say "disk I/O
error" when it cannot grow its shared-memory file), a read-only folder must not read as
either, and a damaged file must point at the backups and at `hearth repair`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.errors import (
    DatabaseDamagedError,
    HearthError,
    ReadOnlyStorageError,
    StorageFullError,
    StoreError,
)
from app.core.storage import (
    disk_is_full,
    full_disk_message,
    is_writable,
    os_error_fault,
    read_only_message,
)

BACKUP_FOLDER_NAME = "backups"

_FULL = ("SQLITE_FULL",)
_READ_ONLY = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def backup_folder(db_path: Path) -> Path:
    """Where the rolling backups of the database at `db_path` are kept."""
    return db_path.parent / BACKUP_FOLDER_NAME


def damaged_message(db_path: Path, detail: str) -> str:
    """What to say about a damaged database: the real backup folder and `hearth repair`."""
    return (
        f"The database {db_path} is damaged ({detail}). Run `hearth repair` to recover "
        "every readable conversation into a fresh database (the damaged file is kept "
        f"aside), or restore a backup from {backup_folder(db_path)}."
    )


def _name(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def is_full_disk(exc: sqlite3.Error, db_path: Path) -> bool:
    """Whether `exc` means the disk holding the database is full."""
    name = _name(exc)
    if name.startswith(_FULL):
        return True
    return name.startswith("SQLITE_IOERR") and disk_is_full(db_path.parent)


def sqlite_fault(exc: sqlite3.Error, db_path: Path, *, what: str) -> HearthError | None:
    """The typed error for a failed SQLite call, or None if it is none of the known kinds.

    Args:
        exc: The SQLite error.
        db_path: The database file.
        what: What could not be done ("the message was not saved"), for the message.
    """
    name = _name(exc)
    folder = db_path.parent
    if is_full_disk(exc, db_path):
        return StorageFullError(full_disk_message(folder, what), path=folder)
    if name.startswith(_READ_ONLY) and (name != "SQLITE_CANTOPEN" or not is_writable(folder)):
        return ReadOnlyStorageError(read_only_message(folder, what), path=folder)
    if name.startswith(_DAMAGED):
        return DatabaseDamagedError(damaged_message(db_path, str(exc)), path=db_path)
    return None


def write_fault(
    exc: OSError | sqlite3.Error, db_path: Path, *, what: str, path: Path
) -> HearthError:
    """The typed error for a failed file write (a backup, a repaired database): never None.

    Args:
        exc: The OS or SQLite error raised while writing.
        db_path: The SQLite file being written (for an SQLite error).
        what: What could not be done, for the message.
        path: The file or folder named in the message.
    """
    if isinstance(exc, OSError):
        fault = os_error_fault(exc, what=what, path=path)
    else:
        fault = sqlite_fault(exc, db_path, what=what)
    return fault or StoreError(f"{what}: {exc}", path=path)


def open_fault(exc: sqlite3.Error, db_path: Path) -> HearthError:
    """The typed error for a database that failed to open (never a bare "unreadable")."""
    fault = sqlite_fault(exc, db_path, what="the database cannot be opened for writing")
    if fault is not None:
        return fault
    if _name(exc).startswith("SQLITE_IOERR"):
        return StoreError(
            f"The database {db_path} could not be read ({exc}). Check the disk, then try "
            f"again; if it persists, run `hearth repair` or restore a backup from "
            f"{backup_folder(db_path)}.",
            path=db_path,
        )
    return StoreError(f"The database {db_path} cannot be opened ({exc}).", path=db_path)
