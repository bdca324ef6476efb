"""The store's conversations and their message trees: reads and writes (not replies)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.chats.conversation import (
    DEFAULT_TITLE,
    Conversation,
    MessageRole,
    MessageStatus,
    MessageTree,
    StoredMessage,
)
from app.core.chats.store_rows import (
    CONVERSATION_COLUMNS,
    INSERT_MESSAGE,
    MESSAGE_COLUMNS,
    conversation_from_row,
    message_from_row,
    message_values,
    rowid,
    settings_json,
)
from app.core.chats.store_settings import SettingsStore
from app.core.chats.token_store import replace_chunks
from app.core.errors import RecordNotFoundError, StoreError
from app.core.inference.sampling import SamplingSettings


class ConversationStore(SettingsStore):
    """Conversations (title, pin, settings, bin) and their messages as trees."""

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
                (title, now, now, settings_json(settings), prompt),
            )
            return self.conversation(rowid(cur))

    def conversation(self, conversation_id: int) -> Conversation:
        """One conversation (soft-deleted ones included)."""
        row = self._row(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        if row is None:
            raise RecordNotFoundError(f"There is no conversation with id {conversation_id}.")
        return conversation_from_row(row)

    def list_conversations(self, *, deleted: bool = False) -> tuple[Conversation, ...]:
        """Pinned first, then the most recently active; `deleted=True` lists the bin."""
        where = "deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL"
        rows = self._rows(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {where} "
            "ORDER BY pinned DESC, updated_at DESC, id DESC"
        )
        return tuple(conversation_from_row(row) for row in rows)

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
            conversation_id, "settings = ?", (settings_json(settings),)
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
        row = self._row(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise RecordNotFoundError(f"There is no message with id {message_id}.")
        return message_from_row(row)

    def messages(self, conversation_id: int) -> tuple[StoredMessage, ...]:
        """Every message of a conversation (all branches), oldest first: one indexed query."""
        rows = self._rows(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return tuple(message_from_row(row) for row in rows)

    def tree(self, conversation_id: int) -> MessageTree:
        """A conversation's messages as a tree."""
        return MessageTree(self.messages(conversation_id))

    def edit_user_message(self, message_id: int, content: str) -> StoredMessage:
        """Fork a branch: a new user message beside `message_id` (same parent), now shown."""
        with self.transaction() as conn:
            original = self.message(message_id)
            if original.role != "user":
                raise StoreError(f"Message {message_id} is a reply; only user messages are edited.")
            return self._insert(conn, original.conversation_id, original.parent_id, "user", content)

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
                    settings_json(conversation.settings),
                    conversation.system_prompt,
                ),
            )
            new_conversation = rowid(cur)
            new_ids: dict[int, int] = {}
            for message in messages:
                if message.parent_id is not None and message.parent_id not in new_ids:
                    raise StoreError(
                        f"Message {message.id} comes before its parent {message.parent_id}."
                    )
                cur = conn.execute(
                    INSERT_MESSAGE,
                    message_values(
                        message,
                        new_conversation,
                        new_ids[message.parent_id] if message.parent_id is not None else None,
                    ),
                )
                new_ids[message.id] = rowid(cur)
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
            INSERT_MESSAGE,
            message_values(message, conversation_id, parent_id),
        )
        message_id = rowid(cur)
        conn.execute(
            "UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
            (message_id, message.created_at, conversation_id),
        )
        return self.message(message_id)

    def _touch(self, conn: sqlite3.Connection, conversation_id: int) -> None:
        conn.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), conversation_id)
        )
