"""SQLite repository for conversations, their message trees, settings and presets.

One file, `AppPaths.data / "hearth.sqlite3"`, in WAL mode with `synchronous=NORMAL`: a
committed write survives the app being killed (a power cut may lose the last second).
The schema and its migrations live in `schema.py`; search types in `search.py`.

Threads: one `Store` owns one connection (`check_same_thread=False`) behind a re-entrant
lock, so it can be shared by the GUI thread and workers; every call holds the lock only for
its own short statements. Another `Store` (or process) on the same file also works: WAL
lets readers run beside one writer, and writers wait up to `BUSY_TIMEOUT_MS`.

A streaming reply is written with `reply_writer.ReplyWriter` (or `update_streaming_reply`):
`start_reply`, partial text at least once a second, then `finish_reply`. At startup,
`mark_interrupted_replies` turns replies a crash left "streaming" into "interrupted".
Full-text search covers every message except replies still streaming (they are indexed
when they finish or are marked interrupted), so streaming updates stay cheap.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.chats import backups, purge
from app.core.chats.conversation import (
    DEFAULT_TITLE,
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    REPLY_ENDS,
    Conversation,
    MessageRole,
    MessageStatus,
    MessageTree,
    ReplyEnd,
    StoredMessage,
)
from app.core.chats.faults import open_fault, sqlite_fault
from app.core.chats.read_only import open_read_only
from app.core.chats.schema import migrate, schema_version
from app.core.chats.search import HIGHLIGHT_END, HIGHLIGHT_START, SEARCH_LIMIT, SearchHit, fts_query
from app.core.chats.token_store import (
    append_chunk,
    messages_with_token_data,
    raw_token_data,
    read_token_data,
    replace_chunks,
)
from app.core.errors import HearthError, InvalidPresetNameError, RecordNotFoundError, StoreError
from app.core.inference.events import GenerationStats
from app.core.inference.sampling import PRESETS, SamplingSettings
from app.core.inference.token_data import TokenData
from app.core.paths import AppPaths
from app.core.storage import os_error_fault

DB_FILE_NAME = "hearth.sqlite3"
BUSY_TIMEOUT_MS = 5000
PURGE_AFTER_S = 60.0
"""Conversations binned longer ago than this are erased when the store opens (the GUI's
Undo lasts seconds, so this only spares a chat another window may still offer to undo)."""
NOT_SAVED = "the last change was not saved"

Clock = Callable[[], float]
log = logging.getLogger(__name__)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationSnapshot:
    """What the chat view needs to show a conversation: its fields, tree and active path."""

    conversation: Conversation
    tree: MessageTree
    path: tuple[StoredMessage, ...]


_MESSAGE_COLUMNS = (
    "id, conversation_id, parent_id, role, content, created_at, status, model, settings, "
    "seed, stats"
)
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CONVERSATION_COLUMNS = (
    "id, title, created_at, updated_at, pinned, settings, system_prompt, active_leaf_id"
)


class Store:
    """The conversation database. Open with `Store.open(paths)` or `Store(path)`.

    Every method is safe to call from any thread (see the module docstring). Methods that
    take an id raise `RecordNotFoundError` when it is unknown.
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
        if read_only:
            self._conn: sqlite3.Connection | None = open_read_only(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000
            )
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

    def backup_now(self) -> backups.Backup:
        """Take a backup now into `backups.backup_folder(path)`, dropping the oldest extra.

        Raises:
            StorageFullError: no room for it (nothing is left half-written).
            DatabaseDamagedError: the copy failed its integrity check (it is not kept).
        """
        return backups.make_backup(self.path)

    def backups(self) -> tuple[backups.Backup, ...]:
        """The rolling backups, newest first, each with its size (for the settings view)."""
        return backups.list_backups(backups.backup_folder(self.path))

    def close(self) -> None:
        """Close the connection (idempotent). A reply still streaming stays "streaming"."""
        with self._lock:
            if self._conn is not None:
                with suppress(sqlite3.Error):  # best effort: a busy file need not block closing
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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

    # --- conversations --------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = DEFAULT_TITLE,
        *,
        system_prompt: str | None = None,
        settings: SamplingSettings | None = None,
    ) -> Conversation:
        """A new, empty conversation. `system_prompt=None` takes the global default."""
        now = self._clock()
        with self.transaction() as conn:
            prompt = system_prompt if system_prompt is not None else self.default_system_prompt()
            cur = conn.execute(
                "INSERT INTO conversations (title, created_at, updated_at, settings, system_prompt)"
                " VALUES (?, ?, ?, ?, ?)",
                (title, now, now, _settings_json(settings), prompt),
            )
            return self.conversation(_rowid(cur))

    def conversation(self, conversation_id: int) -> Conversation:
        """One conversation (soft-deleted ones included)."""
        row = self._row(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        if row is None:
            raise RecordNotFoundError(f"There is no conversation with id {conversation_id}.")
        return _conversation(row)

    def list_conversations(self, *, deleted: bool = False) -> tuple[Conversation, ...]:
        """Pinned first, then the most recently active; `deleted=True` lists the bin."""
        where = "deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL"
        rows = self._rows(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE {where} "
            "ORDER BY pinned DESC, updated_at DESC, id DESC"
        )
        return tuple(_conversation(row) for row in rows)

    def rename_conversation(self, conversation_id: int, title: str) -> Conversation:
        """Give a conversation a new title (its place in the list does not change)."""
        return self._update_conversation(conversation_id, "title = ?", (title,))

    def set_pinned(self, conversation_id: int, pinned: bool) -> Conversation:
        """Pin a conversation to the top of the list, or unpin it."""
        return self._update_conversation(conversation_id, "pinned = ?", (int(pinned),))

    def set_system_prompt(self, conversation_id: int, system_prompt: str) -> Conversation:
        """Replace a conversation's system prompt."""
        return self._update_conversation(conversation_id, "system_prompt = ?", (system_prompt,))

    def set_conversation_settings(
        self, conversation_id: int, settings: SamplingSettings | None
    ) -> Conversation:
        """Override the sampler settings for one conversation; None follows the default."""
        return self._update_conversation(
            conversation_id, "settings = ?", (_settings_json(settings),)
        )

    def conversation_settings(self, conversation_id: int) -> SamplingSettings:
        """The settings in force for a conversation: its own, else the global default."""
        own = self.conversation(conversation_id).settings
        return own if own is not None else self.default_settings()

    def delete_conversation(self, conversation_id: int) -> None:
        """Move a conversation to the bin; `restore_conversation` undoes it."""
        self._update_conversation(conversation_id, "deleted_at = ?", (self._clock(),))

    def restore_conversation(self, conversation_id: int) -> Conversation:
        """Take a conversation out of the bin."""
        return self._update_conversation(conversation_id, "deleted_at = NULL", ())

    def purge_deleted(self, *, deleted_before: float | None = None) -> int:
        """Erase binned conversations for good (those binned before a time, if given).

        Their messages go with them, and no trace of their text stays in the file: deleted
        pages are zeroed (`secure_delete`), the full-text index is rebuilt without them,
        the WAL is emptied and the file vacuumed when much of it is free (see `purge`).
        They are erased from the rolling backups too. Returns how many conversations were
        erased; KV snapshots of them are the caller's.
        """
        where = "deleted_at IS NOT NULL" if deleted_before is None else "deleted_at < ?"
        params = () if deleted_before is None else (deleted_before,)
        with self.transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(f"SELECT id FROM conversations WHERE {where}", params)
            ]
            conn.executemany("DELETE FROM conversations WHERE id = ?", [(i,) for i in ids])
            if ids:
                purge.drop_index_traces(conn)
        if ids:
            with self._lock, self._faults():
                purge.compact(self._connection())
            backups.erase_from_backups(self.path, ids)
        return len(ids)

    def _update_conversation(
        self, conversation_id: int, assignment: str, values: tuple[Any, ...]
    ) -> Conversation:
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET {assignment} WHERE id = ?", (*values, conversation_id)
            )
            if cur.rowcount == 0:
                raise RecordNotFoundError(f"There is no conversation with id {conversation_id}.")
            return self.conversation(conversation_id)

    # --- messages -------------------------------------------------------------------------

    def message(self, message_id: int) -> StoredMessage:
        """One message."""
        row = self._row(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise RecordNotFoundError(f"There is no message with id {message_id}.")
        return _message(row)

    def messages(self, conversation_id: int) -> tuple[StoredMessage, ...]:
        """Every message of a conversation (all branches), oldest first: one indexed query."""
        rows = self._rows(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return tuple(_message(row) for row in rows)

    def tree(self, conversation_id: int) -> MessageTree:
        """A conversation's messages as a tree."""
        return MessageTree(self.messages(conversation_id))

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

    def edit_user_message(self, message_id: int, content: str) -> StoredMessage:
        """Fork a branch: a new user message beside `message_id` (same parent), now shown."""
        with self.transaction() as conn:
            original = self.message(message_id)
            if original.role != "user":
                raise StoreError(f"Message {message_id} is a reply; only user messages are edited.")
            return self._insert(conn, original.conversation_id, original.parent_id, "user", content)

    def start_reply(
        self,
        parent_id: int,
        *,
        model: str,
        settings: SamplingSettings,
        seed: int | None = None,
    ) -> StoredMessage:
        """A new, empty "streaming" reply to a user message; it becomes the leaf.

        A second reply to the same message is a new version of the first (regeneration).
        """
        with self.transaction() as conn:
            parent = self.message(parent_id)
            return self._insert(
                conn,
                parent.conversation_id,
                parent.id,
                "assistant",
                "",
                status="streaming",
                model=model,
                settings=settings,
                seed=seed,
            )

    def regenerate(
        self,
        reply_id: int,
        *,
        model: str,
        settings: SamplingSettings,
        seed: int | None = None,
    ) -> StoredMessage:
        """A new streaming version of a reply, beside it (same user message)."""
        with self.transaction():
            reply = self.message(reply_id)
            if reply.parent_id is None or reply.role != "assistant":
                raise StoreError(f"Message {reply_id} is not a reply; only replies regenerate.")
            return self.start_reply(reply.parent_id, model=model, settings=settings, seed=seed)

    def update_streaming_reply(
        self, message_id: int, content: str, tokens: tuple[int, bytes] | None = None
    ) -> bool:
        """Save the text of a reply so far (one cheap UPDATE; call it about once a second).

        `tokens` is `(first_token, packed chunk)`: the token data since the last save,
        written in the same transaction as the text.
        Returns False when the reply is no longer streaming (finished, or deleted meanwhile).
        """
        if tokens is None:
            with self._lock, self._faults():
                cur = self._connection().execute(
                    "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'",
                    (content, message_id),
                )
            return cur.rowcount > 0
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'",
                (content, message_id),
            )
            if cur.rowcount == 0:
                return False
            append_chunk(conn, message_id, tokens[0], tokens[1])
            return True

    def token_data(self, message_id: int) -> TokenData | None:
        """A reply's token data, read only now; None if it has none (made before Hearth
        kept token data, or imported without it).

        Raises:
            StoreError: the stored token data is damaged.
        """
        with self._lock:
            return read_token_data(self._connection(), message_id)

    def packed_token_data(self, message_id: int) -> list[bytes]:
        """A reply's packed token-data chunks as stored ([] if none)."""
        with self._lock:
            return raw_token_data(self._connection(), message_id)

    def messages_with_token_data(self, conversation_id: int) -> frozenset[int]:
        """Ids of a conversation's replies that have token data (no data is read)."""
        with self._lock:
            return messages_with_token_data(self._connection(), conversation_id)

    def finish_reply(
        self,
        message_id: int,
        content: str,
        status: ReplyEnd,
        *,
        seed: int | None = None,
        settings: SamplingSettings | None = None,
        stats: GenerationStats | Mapping[str, Any] | None = None,
        token_data: bytes | None = None,
    ) -> StoredMessage | None:
        """Save a reply's final text and how it was made.

        `settings=None` keeps those given to `start_reply` (pass the final ones if a slider
        moved mid-reply). `seed=None` takes the seed in `stats` (the one the engine used),
        else keeps the start seed. `token_data` (all of it, packed from token 0) replaces
        the chunks the streaming saves wrote; None keeps them.
        Returns the finished message, or None if it was deleted meanwhile (a stale reply).
        """
        if status not in REPLY_ENDS:
            raise ValueError(f"a finished reply is one of {', '.join(REPLY_ENDS)} (not {status!r})")
        stats_dict = stats.to_dict() if isinstance(stats, GenerationStats) else stats
        if seed is None and stats_dict is not None and stats_dict.get("seed") is not None:
            seed = int(stats_dict["seed"])
        with self.transaction() as conn:
            try:
                current = self.message(message_id)
            except RecordNotFoundError:
                return None
            conn.execute(
                "UPDATE messages SET content = ?, status = ?, seed = ?, settings = ?, stats = ? "
                "WHERE id = ?",
                (
                    content,
                    status,
                    seed if seed is not None else current.seed,
                    _settings_json(settings if settings is not None else current.settings),
                    json.dumps(dict(stats_dict)) if stats_dict is not None else None,
                    message_id,
                ),
            )
            if token_data is not None:
                replace_chunks(conn, message_id, token_data)
            self._touch(conn, current.conversation_id)
            return self.message(message_id)

    def mark_interrupted_replies(self) -> int:
        """At startup: replies left "streaming" by a crash become "interrupted".

        Their partial text is kept. Call it once, before any reply starts (never while
        another Hearth process may be streaming into the same file). Returns the count.
        """
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'"
            )
            return cur.rowcount

    def select_branch(self, message_id: int) -> tuple[StoredMessage, ...]:
        """Show the branch through `message_id` (e.g. a sibling picked with the arrows).

        The branch continues down the newest replies below it; returns the new active path.
        """
        with self.transaction() as conn:
            conversation_id = self.message(message_id).conversation_id
            tree = self.tree(conversation_id)
            leaf = tree.newest_leaf(message_id)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, conversation_id)
            )
            return tree.active_path(leaf)

    def delete_message(self, message_id: int) -> int:
        """Delete a message and everything below it; returns how many were removed.

        If the branch on show went with it, the newest remaining branch under the deleted
        message's parent is shown instead.
        """
        with self.transaction() as conn:
            conversation = self.conversation(self.message(message_id).conversation_id)
            tree = self.tree(conversation.id)
            doomed = tree.subtree_ids(message_id)
            conn.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in reversed(doomed)])
            if conversation.active_leaf_id is None or conversation.active_leaf_id in doomed:
                remaining = MessageTree(m for m in tree.messages if m.id not in doomed)
                parent = tree.get(message_id).parent_id
                leaf = remaining.newest_leaf(parent)
                conn.execute(
                    "UPDATE conversations SET active_leaf_id = ? WHERE id = ?",
                    (leaf, conversation.id),
                )
            self._touch(conn, conversation.id)
            return len(doomed)

    def add_conversation_tree(
        self,
        conversation: Conversation,
        messages: Sequence[StoredMessage],
        token_data: Mapping[int, bytes] | None = None,
    ) -> Conversation:
        """Recreate a whole conversation (import): new ids, same tree, fields and times.

        The ids in `conversation` and `messages` only give the shape; parents must come
        before their children. `token_data` maps message ids (as given) to packed token
        data. Runs in one transaction.
        """
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, created_at, updated_at, pinned, settings,"
                " system_prompt) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    conversation.title,
                    conversation.created_at,
                    conversation.updated_at,
                    int(conversation.pinned),
                    _settings_json(conversation.settings),
                    conversation.system_prompt,
                ),
            )
            new_conversation = _rowid(cur)
            new_ids: dict[int, int] = {}
            for message in messages:
                if message.parent_id is not None and message.parent_id not in new_ids:
                    raise StoreError(
                        f"Message {message.id} comes before its parent {message.parent_id}."
                    )
                cur = conn.execute(
                    _INSERT_MESSAGE,
                    _message_values(
                        message,
                        new_conversation,
                        new_ids[message.parent_id] if message.parent_id is not None else None,
                    ),
                )
                new_ids[message.id] = _rowid(cur)
                if token_data and message.id in token_data:
                    replace_chunks(conn, new_ids[message.id], token_data[message.id])
            leaf = conversation.active_leaf_id
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?",
                (new_ids.get(leaf) if leaf is not None else None, new_conversation),
            )
            return self.conversation(new_conversation)

    def _insert(
        self,
        conn: sqlite3.Connection,
        conversation_id: int,
        parent_id: int | None,
        role: MessageRole,
        content: str,
        *,
        status: MessageStatus = "complete",
        model: str | None = None,
        settings: SamplingSettings | None = None,
        seed: int | None = None,
    ) -> StoredMessage:
        """Insert a message, make it the leaf on show and touch the conversation."""
        self.conversation(conversation_id)  # raises for an unknown id
        message = StoredMessage(
            id=0,
            conversation_id=conversation_id,
            parent_id=parent_id,
            role=role,
            content=content,
            created_at=self._clock(),
            status=status,
            model=model,
            settings=settings,
            seed=seed,
        )
        cur = conn.execute(
            _INSERT_MESSAGE,
            _message_values(message, conversation_id, parent_id),
        )
        message_id = _rowid(cur)
        conn.execute(
            "UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
            (message_id, message.created_at, conversation_id),
        )
        return self.message(message_id)

    def _touch(self, conn: sqlite3.Connection, conversation_id: int) -> None:
        conn.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), conversation_id)
        )

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
        return tuple(SearchHit(row[0], row[1], row[2], _role(row[3]), row[4]) for row in rows)

    # --- settings and presets -------------------------------------------------------------

    def default_settings(self) -> SamplingSettings:
        """The global default sampler settings (built-in defaults until set)."""
        value = self._preference("default_settings")
        return SamplingSettings.from_dict(value) if value is not None else SamplingSettings()

    def set_default_settings(self, settings: SamplingSettings) -> None:
        """Replace the global default sampler settings."""
        self._set_preference("default_settings", settings.to_dict())

    def default_system_prompt(self) -> str:
        """The system prompt new conversations start with ("" until set)."""
        value = self._preference("default_system_prompt")
        return str(value) if value is not None else ""

    def set_default_system_prompt(self, text: str) -> None:
        """Replace the system prompt new conversations start with."""
        self._set_preference("default_system_prompt", text)

    def presets(self) -> dict[str, SamplingSettings]:
        """The person's saved presets by name, alphabetical (built-ins are `PRESETS`)."""
        rows = self._rows("SELECT name, settings FROM presets ORDER BY name")
        return {str(name): _settings_from_json(text) for name, text in rows}

    def save_preset(self, name: str, settings: SamplingSettings) -> None:
        """Save (or overwrite) a named preset."""
        clean = name.strip()
        if not clean:
            raise InvalidPresetNameError("A preset needs a name.")
        if clean.casefold() in {p.casefold() for p in PRESETS}:
            raise InvalidPresetNameError(f'"{clean}" is a built-in preset; pick another name.')
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO presets (name, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET name = excluded.name, "
                "settings = excluded.settings, updated_at = excluded.updated_at",
                (clean, _settings_json(settings), self._clock()),
            )

    def rename_preset(self, old: str, new: str) -> None:
        """Rename a saved preset (replacing any preset already called `new`)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT settings FROM presets WHERE name = ?", (old,)).fetchone()
            if row is None:
                raise RecordNotFoundError(f'There is no preset called "{old}".')
            conn.execute("DELETE FROM presets WHERE name = ?", (old,))
            self.save_preset(new, _settings_from_json(row[0]))

    def delete_preset(self, name: str) -> bool:
        """Delete a saved preset; False if there was none by that name."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount > 0

    def _preference(self, key: str) -> Any:
        row = self._row("SELECT value FROM preferences WHERE key = ?", (key,))
        return json.loads(row[0]) if row is not None else None

    def _set_preference(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO preferences (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )


def _rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None
    return cur.lastrowid


def _settings_json(settings: SamplingSettings | None) -> str | None:
    return json.dumps(settings.to_dict(), sort_keys=True) if settings is not None else None


@lru_cache(maxsize=256)
def _settings_from_json(text: str) -> SamplingSettings:
    """Settings are immutable, and most replies share a few: parse each text once."""
    return SamplingSettings.from_dict(json.loads(text))


def _role(value: str) -> MessageRole:
    for role in MESSAGE_ROLES:
        if value == role:
            return role
    raise StoreError(f"unknown message role {value!r} in the database")


def _status(value: str) -> MessageStatus:
    for status in MESSAGE_STATUSES:
        if value == status:
            return status
    raise StoreError(f"unknown message status {value!r} in the database")


def _message(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        parent_id=row[2],
        role=_role(row[3]),
        content=row[4],
        created_at=row[5],
        status=_status(row[6]),
        model=row[7],
        settings=_settings_from_json(row[8]) if row[8] is not None else None,
        seed=row[9],
        stats=json.loads(row[10]) if row[10] is not None else None,
    )


def _message_values(
    message: StoredMessage, conversation_id: int, parent_id: int | None
) -> tuple[Any, ...]:
    return (
        conversation_id,
        parent_id,
        message.role,
        message.content,
        message.created_at,
        message.status,
        message.model,
        _settings_json(message.settings),
        message.seed,
        json.dumps(dict(message.stats)) if message.stats is not None else None,
    )


def _conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(
        id=row[0],
        title=row[1],
        created_at=row[2],
        updated_at=row[3],
        pinned=bool(row[4]),
        settings=_settings_from_json(row[5]) if row[5] is not None else None,
        system_prompt=row[6],
        active_leaf_id=row[7],
    )
