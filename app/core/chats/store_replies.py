"""The store's replies: streaming, finishing and regenerating them, and their token data.

A streaming reply is written with `reply_writer.ReplyWriter` (or `update_streaming_reply`):
`start_reply`, partial text at least once a second, then `finish_reply`. At startup,
`mark_interrupted_replies` turns replies a crash left "streaming" into "interrupted".
Full-text search covers every message except replies still streaming (they are indexed
when they finish or are marked interrupted), so streaming updates stay cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from app.core.chats.conversation import REPLY_ENDS, ReplyEnd, StoredMessage
from app.core.chats.store_conversations import ConversationStore
from app.core.chats.store_rows import settings_json
from app.core.chats.token_store import (
    append_chunk,
    messages_with_token_data,
    raw_token_data,
    read_token_data,
    replace_chunks,
)
from app.core.errors import RecordNotFoundError, StoreError
from app.core.inference.events import GenerationStats
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenData


class ReplyStore(ConversationStore):
    """Assistant replies, from "streaming" to their end, with their token data."""

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
                    settings_json(settings if settings is not None else current.settings),
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
