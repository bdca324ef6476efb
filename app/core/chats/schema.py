"""The database schema, built by numbered migrations tracked in `PRAGMA user_version`.

A new schema version is one function appended to `MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from app.core.errors import StoreError

Migration = Callable[[sqlite3.Connection], None]

_SCHEMA_1 = (
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        settings TEXT,
        system_prompt TEXT NOT NULL DEFAULT '',
        active_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        deleted_at REAL
    )
    """,
    """
    CREATE INDEX conversations_by_recency
        ON conversations(deleted_at, pinned DESC, updated_at DESC, id DESC)
    """,
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id),
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        created_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('complete', 'streaming', 'cancelled', 'interrupted', 'error')),
        model TEXT,
        settings TEXT,
        seed INTEGER,
        stats TEXT
    )
    """,
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
    "CREATE INDEX messages_by_parent ON messages(parent_id)",
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
    """
    CREATE TABLE presets (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        settings TEXT NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    "CREATE TABLE preferences (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
    WHEN new.status != 'streaming' BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    WHEN old.status != 'streaming' BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END
    """,
    """
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
        INSERT INTO messages_fts(rowid, content)
            SELECT new.id, new.content WHERE new.status != 'streaming';
    END
    """,
)


def _migration_1(conn: sqlite3.Connection) -> None:
    """Conversations, the message tree, presets, preferences and full-text search."""
    for statement in _SCHEMA_1:
        conn.execute(statement)


def _migration_2(conn: sqlite3.Connection) -> None:
    """Token data of replies: packed chunks (`app.core.inference.token_data`), one per save.

    A streaming reply gains a chunk per save (append-only, so a save stays cheap); a
    finished reply has one chunk. Replies made before this version have none.
    """
    conn.execute(
        """
        CREATE TABLE token_data (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            first_token INTEGER NOT NULL,
            data BLOB NOT NULL
        )
        """
    )
    conn.execute("CREATE UNIQUE INDEX token_data_by_message ON token_data(message_id, first_token)")


MIGRATIONS: list[Migration] = [_migration_1, _migration_2]
"""Migration N is `MIGRATIONS[N - 1]`; append new ones, never edit or reorder old ones."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's `PRAGMA user_version`."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Run the migrations the database lacks, each in its own transaction.

    `conn` must be in autocommit mode (`isolation_level=None`). Returns the new version.

    Raises:
        StoreError: the database was made by a newer Hearth, or a migration failed.
    """
    steps = MIGRATIONS if migrations is None else migrations
    version = schema_version(conn)
    if version > len(steps):
        raise StoreError(
            f"This database has schema version {version}, newer than this Hearth knows "
            f"({len(steps)}); update Hearth to open it."
        )
    for number in range(version + 1, len(steps) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            steps[number - 1](conn)
            conn.execute(f"PRAGMA user_version = {number}")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"Upgrading the database to schema version {number} failed ({exc}); "
                    "it was left as it was."
                ) from exc
            raise
        conn.execute("COMMIT")
    return len(steps)
