"""Recover what can be read from a damaged database into a fresh one (`hearth repair`).

The fresh database is built by the normal migrations, then filled table by table, row by
row, from the damaged file opened read-only: a quick scan first, and where the scan hits
a damaged page, a lookup of every row id left, so the rows on the pages after it are found
too. Rows that raise are counted as lost. The full-text index is rebuilt by the insert
triggers, never copied. Messages whose conversation was lost are kept in a "Recovered
messages" conversation. The damaged file (with its -wal and -shm) is moved aside with a
timestamped name, and the fresh one takes its place.

Run it while no Hearth window or command has the database open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.chats.faults import write_fault
from app.core.chats.read_only import open_read_only
from app.core.chats.schema import MIGRATIONS, migrate, schema_version
from app.core.errors import DatabaseDamagedError, StoreError

log = logging.getLogger(__name__)

FIRST_TABLES = ("conversations", "messages")
"""Copied first, in this order; other tables follow alphabetically."""
SKIPPED_PREFIXES = ("sqlite_", "messages_fts")
"""SQLite's own tables, and the full-text index (rebuilt by the triggers instead)."""
PROBE_HORIZON = 1000
"""When the highest row id cannot be read, keep probing this far past the last row found."""
RECOVERED_TITLE = "Recovered messages"
_STAMP = "%Y%m%d-%H%M%S"


@dataclass
class TableRecovery:
    """What came back from one table: rows copied, and row ids that could not be read."""

    table: str
    recovered: int = 0
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)

    def line(self) -> str:
        """One line for the report."""
        text = f"{self.table}: {self.recovered} recovered"
        if self.lost:
            ids = _ranges(self.lost_ids)
            text += f", {self.lost} lost" + (f" (row ids {ids})" if ids else "")
        return text


@dataclass(frozen=True)
class RepairReport:
    """The outcome of `repair_database`."""

    database: Path
    damaged_copy: Path
    tables: tuple[TableRecovery, ...]
    problems: tuple[str, ...]
    adopted_messages: int

    @property
    def recovered(self) -> int:
        """Rows recovered in all tables."""
        return sum(t.recovered for t in self.tables)

    @property
    def lost(self) -> int:
        """Rows that could not be read (or were unusable) in all tables."""
        return sum(t.lost for t in self.tables)

    def lines(self) -> list[str]:
        """The report for a person: what was recovered, what was lost, where things are."""
        out = [f"Repaired {self.database}."]
        out += [f"  {table.line()}" for table in self.tables]
        if self.adopted_messages:
            out.append(
                f"  {self.adopted_messages} message(s) whose conversation was lost are in "
                f'a conversation called "{RECOVERED_TITLE}".'
            )
        if not self.lost:
            out.append("Nothing was lost.")
        out.append(f"The damaged file was kept as {self.damaged_copy}.")
        return out


def check_database(path: Path) -> list[str]:
    """SQLite's integrity check of the file at `path`: [] when it is intact."""
    try:
        with closing(_open_source(path)) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
    except DatabaseDamagedError as exc:
        return [str(exc.__cause__ or exc)]
    except sqlite3.Error as exc:
        return [str(exc)]
    found = [str(row[0]) for row in rows]
    return [] if found == ["ok"] else found


def repair_database(path: Path, *, now: float | None = None) -> RepairReport:
    """Rebuild the database at `path` from every readable row; keep the damaged file aside.

    Raises:
        StoreError: there is no database at `path`, or it is from a newer Hearth.
        StorageFullError / ReadOnlyStorageError: the fresh database cannot be written.
    """
    if not path.is_file():
        raise StoreError(f"There is no database at {path} to repair.", path=path)
    now = time.time() if now is None else now
    fresh = path.with_name(path.name + ".repairing")
    damaged = path.with_name(f"{path.name}.damaged-{time.strftime(_STAMP, time.localtime(now))}")
    problems = tuple(check_database(path)[:10])
    _remove_database(fresh)
    what = f"the repaired database cannot be written next to {path}"
    try:
        tables, adopted = _rebuild(path, fresh)
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                os.replace(source, damaged.with_name(damaged.name + suffix))
        os.replace(fresh, path)
    except (OSError, sqlite3.Error) as exc:
        _remove_database(fresh)
        raise write_fault(exc, fresh, what=what, path=path) from exc
    except BaseException:
        _remove_database(fresh)
        raise
    report = RepairReport(path, damaged, tuple(tables), problems, adopted)
    log.info("repaired %s: %s", path, "; ".join(t.line() for t in tables))
    return report


def _rebuild(source_path: Path, fresh: Path) -> tuple[list[TableRecovery], int]:
    with closing(sqlite3.connect(fresh, isolation_level=None)) as dest:
        migrate(dest)
        tables: list[TableRecovery] = []
        try:
            source = _open_source(source_path)
        except (sqlite3.Error, DatabaseDamagedError) as exc:
            log.warning("the damaged database cannot be opened at all: %s", exc)
            source = None
        with closing(source) if source is not None else nullcontext():
            if source is not None:
                _check_version(source, source_path)
            for table in _tables(dest):
                recovery = TableRecovery(table)
                if source is not None:
                    _copy_table(source, dest, table, recovery)
                tables.append(recovery)
        adopted = _mend_links(dest)
    return tables, adopted


def _open_source(path: Path) -> sqlite3.Connection:
    """The damaged file, read-only (on a read-only disk too), text decoded leniently."""
    conn = open_read_only(path, check_version=False)
    conn.text_factory = _lenient_text
    return conn


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _check_version(source: sqlite3.Connection, path: Path) -> None:
    with suppress(sqlite3.Error):
        version = schema_version(source)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"The database {path} has schema version {version}, newer than this Hearth "
                f"knows ({len(MIGRATIONS)}); repair it with the Hearth that made it.",
                path=path,
            )


def _tables(dest: sqlite3.Connection) -> list[str]:
    names = [
        str(row[0])
        for row in dest.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(row[0]).startswith(SKIPPED_PREFIXES)
    ]
    first = [t for t in FIRST_TABLES if t in names]
    return first + sorted(t for t in names if t not in first)


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f'PRAGMA table_info("{table}")')]


def _copy_table(
    source: sqlite3.Connection, dest: sqlite3.Connection, table: str, recovery: TableRecovery
) -> None:
    try:
        have = set(_columns(source, table))
    except sqlite3.Error as exc:
        log.warning("table %s cannot be read at all: %s", table, exc)
        recovery.lost += 1
        return
    columns = [c for c in _columns(dest, table) if c in have]
    if not columns:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    dest.execute("BEGIN")
    try:
        for rowid, values in _readable_rows(source, table, names, recovery):
            try:
                dest.execute(insert, values)
            except sqlite3.Error as exc:  # a damaged value that breaks a constraint
                log.info("row %d of %s is unusable: %s", rowid, table, exc)
                recovery.lost += 1
                recovery.lost_ids.append(rowid)
            else:
                recovery.recovered += 1
        dest.execute("COMMIT")
    except BaseException:
        dest.execute("ROLLBACK")
        raise


def _readable_rows(
    source: sqlite3.Connection, table: str, names: str, recovery: TableRecovery
) -> Iterator[tuple[int, Sequence[Any]]]:
    """Every row that can be read: a scan, then row-by-row lookups past a damaged page."""
    last = 0
    try:
        for row in source.execute(f'SELECT rowid, {names} FROM "{table}" ORDER BY rowid'):
            last = int(row[0])
            yield last, row[1:]
        return
    except sqlite3.Error as exc:
        log.warning("scan of %s stopped after row id %d: %s", table, last, exc)
    try:
        highest: int | None = int(source.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0])
    except (sqlite3.Error, TypeError):
        highest = None
    lookup = f'SELECT {names} FROM "{table}" WHERE rowid = ?'
    rowid, found_at = last, last
    while True:
        rowid += 1
        if (highest is not None and rowid > highest) or (
            highest is None and rowid > found_at + PROBE_HORIZON
        ):
            break
        try:
            row = source.execute(lookup, (rowid,)).fetchone()
        except sqlite3.Error:
            recovery.lost += 1
            recovery.lost_ids.append(rowid)
            continue
        if row is not None:
            found_at = rowid
            yield rowid, row
    if highest is None:  # ids probed past the last row found are not rows that were lost
        extra = [i for i in recovery.lost_ids if i > found_at]
        recovery.lost -= len(extra)
        recovery.lost_ids = [i for i in recovery.lost_ids if i <= found_at]


def _mend_links(dest: sqlite3.Connection) -> int:
    """Make the recovered rows consistent: orphans adopted, dangling links cleared."""
    dest.execute("BEGIN")
    orphans = dest.execute(
        "SELECT conversation_id, min(created_at), max(created_at), count(*) FROM messages"
        " WHERE conversation_id NOT IN (SELECT id FROM conversations) GROUP BY conversation_id"
    ).fetchall()
    for conversation_id, first, last, _count in orphans:
        dest.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (conversation_id, RECOVERED_TITLE, first, last),
        )
    dest.execute(
        "UPDATE messages SET parent_id = NULL"
        " WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM messages)"
    )
    dest.execute(
        "UPDATE conversations SET active_leaf_id = NULL WHERE active_leaf_id IS NOT NULL"
        " AND active_leaf_id NOT IN (SELECT id FROM messages WHERE conversation_id ="
        " conversations.id)"
    )
    dest.execute("COMMIT")
    broken = dest.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise StoreError(f"The repaired database still has broken links: {broken[:5]}")
    return sum(int(row[3]) for row in orphans)


def _ranges(ids: Sequence[int], limit: int = 8) -> str:
    """1,2,3,7 -> "1-3, 7" (the first `limit` ranges)."""
    spans: list[tuple[int, int]] = []
    for i in sorted(ids):
        if spans and i == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    text = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans[:limit])
    return text + (", …" if len(spans) > limit else "")


def _remove_database(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with suppress(OSError):
            path.with_name(path.name + suffix).unlink()
