"""Rows of the conversation database turned into values, and values into rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from app.core.chats.conversation import (
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    Conversation,
    MessageRole,
    MessageStatus,
    StoredMessage,
)
from app.core.errors import StoreError
from app.core.inference.sampling import SamplingSettings

MESSAGE_COLUMNS = (
    "id, conversation_id, parent_id, role, content, created_at, status, model, settings, "
    "seed, stats"
)
INSERT_MESSAGE = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
CONVERSATION_COLUMNS = (
    "id, title, created_at, updated_at, pinned, settings, system_prompt, active_leaf_id"
)


def rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None
    return cur.lastrowid


def settings_json(settings: SamplingSettings | None) -> str | None:
    return json.dumps(settings.to_dict(), sort_keys=True) if settings is not None else None


@lru_cache(maxsize=256)
def settings_from_json(text: str) -> SamplingSettings:
    """Settings are immutable, and most replies share a few: parse each text once."""
    return SamplingSettings.from_dict(json.loads(text))


def parse_role(value: str) -> MessageRole:
    for role in MESSAGE_ROLES:
        if value == role:
            return role
    raise StoreError(f"unknown message role {value!r} in the database")


def _status(value: str) -> MessageStatus:
    for status in MESSAGE_STATUSES:
        if value == status:
            return status
    raise StoreError(f"unknown message status {value!r} in the database")


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        parent_id=row[2],
        role=parse_role(row[3]),
        content=row[4],
        created_at=row[5],
        status=_status(row[6]),
        model=row[7],
        settings=settings_from_json(row[8]) if row[8] is not None else None,
        seed=row[9],
        stats=json.loads(row[10]) if row[10] is not None else None,
    )


def message_values(
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
        settings_json(message.settings),
        message.seed,
        json.dumps(dict(message.stats)) if message.stats is not None else None,
    )


def conversation_from_row(row: Sequence[Any]) -> Conversation:
    return Conversation(
        id=row[0],
        title=row[1],
        created_at=row[2],
        updated_at=row[3],
        pinned=bool(row[4]),
        settings=settings_from_json(row[5]) if row[5] is not None else None,
        system_prompt=row[6],
        active_leaf_id=row[7],
    )
