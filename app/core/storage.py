"""What a failed write means for the person: a full disk, a read-only folder, or neither.

Any code that writes Hearth's files (the database, logs, downloads) can turn an `OSError`
into a typed error with `os_error_fault`; the SQLite flavour lives in `chats/faults.py`.
A full disk is told apart from a broken file by asking the file system how much room is
left, since SQLite reports some full-disk failures only as a "disk I/O error".
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from app.core.errors import HearthError, ReadOnlyStorageError, StorageFullError
from app.core.units import format_bytes

NEARLY_FULL_BYTES = 1024 * 1024
"""Below this much free space a failed write is blamed on the disk being full."""

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def existing_folder(path: Path) -> Path:
    """`path` if it is a folder, else its nearest existing parent folder."""
    folder = path
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the disk holding `path` (None if it cannot be asked)."""
    try:
        return shutil.disk_usage(existing_folder(path)).free
    except OSError:
        return None


def disk_is_full(path: Path, *, margin: int = NEARLY_FULL_BYTES) -> bool:
    """Whether the disk holding `path` has less than `margin` bytes free."""
    free = free_bytes(path)
    return free is not None and free < margin


def is_writable(folder: Path) -> bool:
    """Whether files can be created in `folder` (read-only mounts count, even for root)."""
    return os.access(existing_folder(folder), os.W_OK)


def full_disk_message(path: Path, what: str) -> str:
    """One sentence naming the full disk, what could not be saved and what to do."""
    folder = existing_folder(path)
    free = free_bytes(folder)
    room = f" ({format_bytes(free)} free)" if free is not None else ""
    return (
        f"The disk holding {folder} is full{room}: {what}. Free some space on it "
        "(or move Hearth's data elsewhere with --data-dir or HEARTH_HOME) and try again."
    )


def read_only_message(path: Path, what: str) -> str:
    """One sentence naming the folder that cannot be written and what to do."""
    folder = existing_folder(path)
    return (
        f"{folder} is read-only for Hearth: {what}. Make it writable (or use another "
        "folder with --data-dir or HEARTH_HOME); reading and exporting still work."
    )


def os_error_fault(exc: OSError, *, what: str, path: Path | None = None) -> HearthError | None:
    """The typed error for a failed file operation, or None if it is neither full nor read-only.

    Args:
        exc: The error raised by the write.
        what: What could not be done, for the message ("the log cannot be written").
        path: The file or folder written; defaults to the one named in `exc`.
    """
    where = path if path is not None else Path(exc.filename) if exc.filename else None
    if where is None:
        return None
    if exc.errno in FULL_ERRNOS:
        return StorageFullError(full_disk_message(where, what), path=existing_folder(where))
    if exc.errno in READ_ONLY_ERRNOS:
        return ReadOnlyStorageError(read_only_message(where, what), path=existing_folder(where))
    return None
