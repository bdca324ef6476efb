"""Opening the database without writing a byte: for commands that only read.

`mode=ro` reads a live database beside a running app (WAL readers need the -shm index,
which SQLite creates if the folder is writable). On a read-only disk with no -shm left
behind, `immutable=1` still reads the file, as long as the WAL holds nothing it would miss.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.chats.faults import open_fault
from app.core.chats.schema import MIGRATIONS, schema_version
from app.core.errors import StoreError


def open_read_only(
    path: Path, *, timeout: float = 5.0, check_version: bool = True
) -> sqlite3.Connection:
    """Open without writing anything: `mode=ro`, else `immutable` (no WAL index needed).

    `immutable` is only used when the WAL holds nothing, since it would not see the WAL.
    `check_version=False` opens a database of any schema version (to check or repair it).

    Raises:
        DatabaseDamagedError, StorageFullError, ReadOnlyStorageError, StoreError: as
            `faults.open_fault` says.
    """
    if not path.is_file():
        raise StoreError(f"There is no database at {path} yet: nothing to read.", path=path)
    wal = path.with_name(path.name + "-wal")
    queries = ["mode=ro"]
    if not wal.exists() or wal.stat().st_size == 0:
        queries.append("mode=ro&immutable=1")
    failure: sqlite3.Error | None = None
    for query in queries:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?{query}",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=timeout,
        )
        try:
            conn.execute("PRAGMA query_only = ON")
            version = schema_version(conn)  # the first read: a missing WAL index fails here
        except sqlite3.Error as exc:
            conn.close()
            failure = failure or exc
            if str(getattr(exc, "sqlite_errorname", "")).startswith(
                ("SQLITE_CORRUPT", "SQLITE_NOTADB")
            ):
                break
            continue
        if check_version and version != len(MIGRATIONS):
            conn.close()
            newer = version > len(MIGRATIONS)
            raise StoreError(
                f"The database {path} has schema version {version}; this Hearth reads "
                f"version {len(MIGRATIONS)}. "
                + (
                    "Update Hearth to read it."
                    if newer
                    else "Open it once with write access (e.g. start the app) to upgrade it."
                ),
                path=path,
            )
        return conn
    assert failure is not None
    raise open_fault(failure, path) from failure
