"""Reading and writing replies' token data in the `token_data` table (schema version 2).

A reply's token data is a run of packed chunks (`app.core.inference.token_data.pack`) keyed
by the index of their first token: a streaming save appends one, a finished reply keeps one.
A reply with no chunk has no token data (made before Hearth kept it, or by a backend that
gives none). Nothing here is read when a conversation opens: only on request.
"""

from __future__ import annotations

import sqlite3

from app.core.errors import StoreError
from app.core.inference.token_data import TokenData, TokenDataError, join_chunks, unpack


def append_chunk(conn: sqlite3.Connection, message_id: int, first_token: int, blob: bytes) -> None:
    """Add (or replace) the chunk of `message_id` that starts at `first_token`."""
    conn.execute(
        "INSERT INTO token_data (message_id, first_token, data) VALUES (?, ?, ?) "
        "ON CONFLICT(message_id, first_token) DO UPDATE SET data = excluded.data",
        (message_id, first_token, blob),
    )


def replace_chunks(conn: sqlite3.Connection, message_id: int, blob: bytes) -> None:
    """Make `blob` (packed from token 0) the reply's only chunk."""
    conn.execute("DELETE FROM token_data WHERE message_id = ?", (message_id,))
    append_chunk(conn, message_id, 0, blob)


def read_token_data(conn: sqlite3.Connection, message_id: int) -> TokenData | None:
    """The reply's token data, or None if it has none.

    Raises:
        StoreError: the stored data is damaged.
    """
    rows = conn.execute(
        "SELECT data FROM token_data WHERE message_id = ? ORDER BY first_token", (message_id,)
    ).fetchall()
    if not rows:
        return None
    try:
        return join_chunks(unpack(bytes(row[0])) for row in rows)
    except TokenDataError as exc:
        raise StoreError(f"The token data of message {message_id} is damaged: {exc}.") from exc


def raw_token_data(conn: sqlite3.Connection, message_id: int) -> list[bytes]:
    """The reply's packed chunks in order, as stored (for measuring and copying)."""
    rows = conn.execute(
        "SELECT data FROM token_data WHERE message_id = ? ORDER BY first_token", (message_id,)
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def messages_with_token_data(conn: sqlite3.Connection, conversation_id: int) -> frozenset[int]:
    """Ids of the conversation's messages that have token data (one indexed query)."""
    rows = conn.execute(
        "SELECT DISTINCT t.message_id FROM token_data t JOIN messages m ON m.id = t.message_id"
        " WHERE m.conversation_id = ?",
        (conversation_id,),
    ).fetchall()
    return frozenset(int(row[0]) for row in rows)
