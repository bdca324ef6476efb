"""The store's connection: one SQLite file, one lock, typed faults and transactions.

One file, `AppPaths.data / "hearth.sqlite3"`, in WAL mode with `synchronous=NORMAL`: a
committed write survives the app being killed (a power cut may lose the last second).
The schema and its migrations live in `schema.py`.

Threads: one `Store` owns one connection (`check_same_thread=False`) behind a re-entrant
lock, so it can be shared by the GUI thread and workers; every call holds the lock only for
its own short statements. Another `Store` (or process) on the same file also works: WAL
lets readers run beside one writer, and writers wait up to `BUSY_TIMEOUT_MS`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from app.core.chats.faults import open_fault, sqlite_fault
from app.core.chats.read_only import open_read_only
from app.core.chats.schema import migrate, schema_version
from app.core.errors import StoreError
from app.core.storage import os_error_fault

BUSY_TIMEOUT_MS = 5000
NOT_SAVED = "the last change was not saved"

Clock = Callable[[], float]


class StoreBase:
    """The connection under `Store`: opening, closing, reads and transactions.

    The parts of `Store` (`store_settings`, `store_conversations`, `store_replies`,
    `store_upkeep`) build on it; open a `Store`, not this.
    """

    def __init__(
        self, path: Path | str, *, clock: Clock = time.time, read_only: bool = False
    ) -> None:
        """Open (and create or upgrade) the database at `path`.

        `read_only=True` never writes (not even the WAL index when the folder is read-only)
        and refuses a database whose schema this Hearth would have to upgrade.

        Raises:
            StorageFullError: the disk is full (the database itself is fine).
            ReadOnlyStorageError: the folder or file cannot be written.
            DatabaseDamagedError: the file is damaged; `hearth repair` recovers it.
            StoreError: any other reason it cannot be opened.
        """
        self.path = Path(path)
        self.read_only = read_only
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        self._open()

    def reopen(self) -> None:
        """Close the connection and open the file at `path` again: after `repair_database`
        replaced it, every holder of this object reads the fresh file.

        Raises: as opening does.
        """
        with self._lock:
            self.close()
            self._open()

    def _open(self) -> None:
        if self.read_only:
            self._conn = open_read_only(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fault = os_error_fault(exc, what="the database cannot be created", path=self.path)
            raise fault or StoreError(
                f"Cannot create the folder {self.path.parent}: {exc}", path=self.path
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise open_fault(exc, self.path) from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # deleted text is zeroed, not left behind
            migrate(conn)
        except StoreError as exc:
            conn.close()
            cause = exc.__cause__
            if isinstance(cause, sqlite3.Error):
                fault = sqlite_fault(cause, self.path, what="the database cannot be upgraded")
                if fault is not None:
                    raise fault from cause
            raise StoreError(f"{self.path}: {exc}", path=self.path) from exc
        except sqlite3.Error as exc:
            conn.close()
            raise open_fault(exc, self.path) from exc
        self._conn = conn

    def close(self) -> None:
        """Close the connection (idempotent). A reply still streaming stays "streaming"."""
        with self._lock:
            if self._conn is not None:
                with suppress(sqlite3.Error):  # best effort: a busy file need not block closing
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
                self._conn = None

    @property
    def schema_version(self) -> int:
        """The database's migration number."""
        with self._lock:
            return schema_version(self._connection())

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._faults():
            return self._connection().execute(sql, params).fetchall()

    def _row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock, self._faults():
            return self._connection().execute(sql, params).fetchone()

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """Full disk, read-only file and damaged pages become typed errors."""
        try:
            yield
        except sqlite3.Error as exc:
            fault = sqlite_fault(exc, self.path, what=NOT_SAVED)
            if fault is None:
                raise
            raise fault from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"The database {self.path} is closed.", path=self.path)
        return self._conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Run statements atomically: commit on success, roll back on any exception.

        Nested use becomes a savepoint of the outer transaction. `write=False` starts a
        deferred (read) transaction: a consistent view of several queries.
        """
        with self._lock, self._faults():
            conn = self._connection()
            if self._depth:
                name = f"nested_{self._depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE" if write and not self.read_only else "BEGIN")
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (disk full) may leave it open, or not
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
