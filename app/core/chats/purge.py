"""Erasing deleted conversations for good: no trace of their text left in the files.

`Store.purge_deleted` deletes the rows (messages go with their conversation, and the
full-text triggers remove their index entries); with `PRAGMA secure_delete` on, SQLite
zeroes the freed space. Two places would still hold the text: FTS5 keeps deleted tokens
in old index segments until they are merged (`drop_index_traces` merges them), and the
WAL keeps old page images until a checkpoint (`compact` empties it, and vacuums the file
when much of it is free space).
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger(__name__)

FTS_TABLE = "messages_fts"
VACUUM_MIN_FREE_PAGES = 256
"""Vacuum only when at least this many pages are free (1 MiB with 4 KiB pages) ..."""
VACUUM_MIN_FREE_FRACTION = 0.25
"""... and they are at least this share of the file."""


def drop_index_traces(conn: sqlite3.Connection) -> None:
    """Merge the full-text index so deleted messages' tokens leave its old segments.

    Run it in the transaction that deleted the rows.
    """
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")


def compact(
    conn: sqlite3.Connection,
    *,
    min_free_pages: int = VACUUM_MIN_FREE_PAGES,
    min_free_fraction: float = VACUUM_MIN_FREE_FRACTION,
) -> bool:
    """Empty the WAL into the file, and vacuum when the free pages are many.

    Call it outside a transaction. A checkpoint another reader blocks is retried on the
    next purge (that reader's snapshot still needs those pages). Returns whether the
    file was vacuumed.
    """
    vacuumed = False
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free >= min_free_pages and pages and free / pages >= min_free_fraction:
        conn.execute("VACUUM")
        vacuumed = True
        log.info("vacuumed the database: %d of %d pages were free", free, pages)
    busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy == 1:
        log.info("the WAL could not be emptied now (another reader); it will be later")
    return vacuumed
