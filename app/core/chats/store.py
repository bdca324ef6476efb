"""SQLite repository for conversations, their message trees, settings and presets.

`Store` is assembled from parts, each in a module of its own: `store_base` (the connection,
its lock, transactions; the file, WAL and threads), `store_settings` (defaults, presets),
`store_conversations` (conversations and message trees), `store_replies` (streaming
replies and their token data), `store_upkeep` (erasing the bin, backups); `store_rows`
maps rows to values. This module opens it and reads what a view shows at once. Search
types live in `search.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from app.core.chats import backups
from app.core.chats.conversation import Conversation, MessageTree, StoredMessage
from app.core.chats.search import HIGHLIGHT_END, HIGHLIGHT_START, SEARCH_LIMIT, SearchHit, fts_query
from app.core.chats.store_replies import ReplyStore
from app.core.chats.store_rows import parse_role
from app.core.chats.store_upkeep import UpkeepStore
from app.core.errors import HearthError
from app.core.paths import AppPaths

DB_FILE_NAME = "hearth.sqlite3"
PURGE_AFTER_S = 60.0
"""Conversations binned longer ago than this are erased when the store opens (the GUI's
Undo lasts seconds, so this only spares a chat another window may still offer to undo)."""

log = logging.getLogger(__name__)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationSnapshot:
    """What the chat view needs to show a conversation: its fields, tree and active path."""

    conversation: Conversation
    tree: MessageTree
    path: tuple[StoredMessage, ...]


class Store(ReplyStore, UpkeepStore):
    """The conversation database. Open with `Store.open(paths)` or `Store(path)`.

    Every method is safe to call from any thread (see `store_base`). Methods that
    take an id raise `RecordNotFoundError` when it is unknown.
    """

    @classmethod
    def open(cls, paths: AppPaths, *, read_only: bool = False) -> Store:
        """The store in the app's data folder, with start-up care when writable.

        Writable, it first takes a rolling backup if the last is over a day old and erases
        conversations binned more than `PURGE_AFTER_S` ago; neither failing stops the open
        (they are logged). Read-only (for commands that only read), it does neither.
        """
        store = cls(paths.data / DB_FILE_NAME, read_only=read_only)
        if not read_only:
            try:
                store.purge_deleted(deleted_before=time.time() - PURGE_AFTER_S)
                backups.backup_if_due(store.path)
            except HearthError as exc:
                log.warning("start-up care of the database skipped: %s", exc)
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def snapshot(self, conversation_id: int) -> ConversationSnapshot:
        """A conversation, its tree and the branch on show, read consistently."""
        with self.transaction(write=False):
            conversation = self.conversation(conversation_id)
            tree = self.tree(conversation_id)
        return ConversationSnapshot(
            conversation, tree, tree.active_path(conversation.active_leaf_id)
        )

    def active_path(self, conversation_id: int) -> tuple[StoredMessage, ...]:
        """The branch on show, root first."""
        return self.snapshot(conversation_id).path

    def add_user_message(self, conversation_id: int, content: str) -> StoredMessage:
        """Append a user message to the end of the branch on show; it becomes the leaf.

        Contract: the message is stored when this returns, and only then. If it raises
        (`StorageFullError` on a full disk, `ReadOnlyStorageError`, ...) nothing was
        written and the caller still holds the only copy of `content`: keep it (on screen,
        in the composer, in memory) and offer to try again or save it elsewhere; never
        clear it before this returns.
        """
        with self.transaction() as conn:
            parent = self.conversation(conversation_id).active_leaf_id
            has_children = parent is not None and self._row(
                "SELECT 1 FROM messages WHERE parent_id = ? LIMIT 1", (parent,)
            )
            if parent is None or has_children:  # the stored leaf is stale: walk the tree
                path = self.snapshot(conversation_id).path
                parent = path[-1].id if path else None
            return self._insert(conn, conversation_id, parent, "user", content)

    # --- search ---------------------------------------------------------------------------

    def search(self, text: str, *, limit: int = SEARCH_LIMIT) -> tuple[SearchHit, ...]:
        """Messages in conversations not in the bin that contain every word of `text`.

        The last word matches as a prefix (search as you type). Best matches first.
        """
        query = fts_query(text)
        if not query:
            return ()
        rows = self._rows(
            "SELECT m.conversation_id, c.title, m.id, m.role,"
            " snippet(messages_fts, 0, ?, ?, '…', 16)"
            " FROM messages_fts"
            " JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE messages_fts MATCH ? AND c.deleted_at IS NULL"
            " ORDER BY rank, m.id DESC LIMIT ?",
            (HIGHLIGHT_START, HIGHLIGHT_END, query, limit),
        )
        return tuple(SearchHit(row[0], row[1], row[2], parse_role(row[3]), row[4]) for row in rows)
