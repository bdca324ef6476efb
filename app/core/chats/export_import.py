"""Export conversations as JSON or Markdown, and import Hearth JSON back into the store.

The JSON document::

    {"format": "hearth.conversations", "version": 1, "exported_at": "...Z",
     "conversations": [{"id", "title", "created_at", "updated_at", "pinned",
                        "system_prompt", "settings", "active_leaf", "messages": [...]}]}

Each message carries OpenAI-style `role` and `content`, plus `id`, `parent` (the id of the
message it answers, null for the first), `status`, `created_at`, `model`, `settings`, `seed`
and `stats`. Messages are a flat list in which parents come before their children: the tree
is in the `parent` links (a nested tree would overflow JSON parsers on long chats).
Times are ISO 8601 in UTC. Markdown shows the branch on show of each conversation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.core.chats.conversation import (
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    Conversation,
    MessageRole,
    MessageStatus,
    StoredMessage,
    reply_summary,
)
from app.core.chats.store import Store
from app.core.errors import HearthError, InvalidSettingError
from app.core.inference.sampling import SamplingSettings

FORMAT = "hearth.conversations"
VERSION = 1


class TransferError(HearthError):
    """An export or import file that cannot be read, written or understood."""


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation and its messages read from a file, ids as in the file."""

    conversation: Conversation
    messages: tuple[StoredMessage, ...]


# --- export -------------------------------------------------------------------------------


def export_document(store: Store, conversation_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """The JSON document for some conversations (default: all not in the bin)."""
    ids = _ids(store, conversation_ids)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _iso(time.time()),
        "conversations": [_conversation_json(store, i) for i in ids],
    }


def export_json(store: Store, conversation_ids: Iterable[int] | None = None) -> str:
    """The JSON document as text (UTF-8 friendly, indented)."""
    return json.dumps(export_document(store, conversation_ids), ensure_ascii=False, indent=2) + "\n"


def export_markdown(store: Store, conversation_ids: Iterable[int] | None = None) -> str:
    """The branch on show of each conversation as readable Markdown."""
    parts = []
    for conversation_id in _ids(store, conversation_ids):
        snapshot = store.snapshot(conversation_id)
        parts.append(conversation_markdown(snapshot.conversation, snapshot.path))
    return "\n---\n\n".join(parts)


def conversation_markdown(conversation: Conversation, path: Sequence[StoredMessage]) -> str:
    """One conversation's branch as Markdown: title, system prompt, turns, reply stats."""
    lines = [
        f"# {_one_line(conversation.title)}",
        "",
        f"*Created {_human_time(conversation.created_at)}*",
        "",
    ]
    if conversation.system_prompt:
        lines += ["**System prompt**", ""]
        lines += [f"> {line}".rstrip() for line in conversation.system_prompt.splitlines()]
        lines.append("")
    for message in path:
        if message.role == "user":
            lines.append("## You")
        else:
            model = f" · {Path(message.model).name}" if message.model else ""
            lines.append(f"## Assistant{model}")
        lines += ["", message.content.rstrip("\n"), ""]
        summary = reply_summary(message)
        if summary:
            lines += [f"*{summary}*", ""]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    """Write an export file, as a `TransferError` naming the file if that fails."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TransferError(f"Cannot write {path}: {exc.strerror or exc}", path=path) from exc


def _ids(store: Store, conversation_ids: Iterable[int] | None) -> list[int]:
    if conversation_ids is None:
        return [c.id for c in store.list_conversations()]
    return list(conversation_ids)


def _conversation_json(store: Store, conversation_id: int) -> dict[str, Any]:
    snapshot = store.snapshot(conversation_id)
    conversation = snapshot.conversation
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "pinned": conversation.pinned,
        "system_prompt": conversation.system_prompt,
        "settings": _settings_json(conversation.settings),
        "active_leaf": snapshot.path[-1].id if snapshot.path else None,
        "messages": [_message_json(m) for m in snapshot.tree.messages],
    }


def _message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "id": message.id,
        "parent": message.parent_id,
        "status": message.status,
        "created_at": _iso(message.created_at),
        "model": message.model,
        "settings": _settings_json(message.settings),
        "seed": message.seed,
        "stats": dict(message.stats) if message.stats is not None else None,
    }


def _settings_json(settings: SamplingSettings | None) -> dict[str, Any] | None:
    return settings.to_dict() if settings is not None else None


# --- import -------------------------------------------------------------------------------


def import_file(store: Store, path: Path) -> tuple[Conversation, ...]:
    """Import every conversation of a Hearth JSON file; returns them as stored (new ids).

    The whole file is checked before anything is written; each conversation is then
    written in its own transaction.

    Raises:
        TransferError: the file is missing, unreadable, not JSON, or not a Hearth export.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TransferError(f"{path}: no such file.", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferError(f"Cannot read {path}: {exc}", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TransferError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            path=path,
        ) from exc
    return import_document(store, data, source=str(path))


def import_document(
    store: Store, data: Any, *, source: str = "the import"
) -> tuple[Conversation, ...]:
    """Import a parsed JSON document (see `import_file`)."""
    records = parse_document(data, source=source)
    return tuple(store.add_conversation_tree(r.conversation, r.messages) for r in records)


def parse_document(data: Any, *, source: str = "the import") -> tuple[ConversationRecord, ...]:
    """Check a JSON document and turn it into records; nothing is written.

    Raises:
        TransferError: naming `source` and the place in the document that is wrong.
    """
    reader = _Reader(source)
    doc = reader.mapping(data, "the document")
    if doc.get("format") != FORMAT:
        raise reader.error(
            "the document", f'is not a Hearth export (expected "format": "{FORMAT}")'
        )
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise reader.error("the document", '"version" must be a whole number')
    if version > VERSION:
        raise reader.error(
            "the document", f"is version {version}, newer than this Hearth reads ({VERSION})"
        )
    items = reader.sequence(doc.get("conversations"), '"conversations"')
    return tuple(
        _parse_conversation(reader, item, f"conversations[{i}]") for i, item in enumerate(items)
    )


def _parse_conversation(reader: _Reader, data: Any, where: str) -> ConversationRecord:
    item = reader.mapping(data, where)
    now = time.time()
    messages: list[StoredMessage] = []
    seen: set[int] = set()
    for i, raw in enumerate(reader.sequence(item.get("messages", []), f"{where}.messages")):
        message = _parse_message(reader, raw, f"{where}.messages[{i}]", now)
        if message.id in seen:
            raise reader.error(f"{where}.messages[{i}]", f"repeats id {message.id}")
        if message.parent_id is not None and message.parent_id not in seen:
            raise reader.error(
                f"{where}.messages[{i}]",
                f"its parent {message.parent_id} is not an earlier message of this conversation",
            )
        seen.add(message.id)
        messages.append(message)
    leaf = reader.optional_int(item.get("active_leaf"), f"{where}.active_leaf")
    conversation = Conversation(
        id=0,
        title=reader.text(item.get("title", ""), f"{where}.title"),
        created_at=reader.time(item.get("created_at"), f"{where}.created_at", now),
        updated_at=reader.time(item.get("updated_at"), f"{where}.updated_at", now),
        pinned=bool(item.get("pinned", False)),
        settings=reader.settings(item.get("settings"), f"{where}.settings"),
        system_prompt=reader.text(item.get("system_prompt", ""), f"{where}.system_prompt"),
        active_leaf_id=leaf if leaf in seen else None,
    )
    return ConversationRecord(conversation, tuple(messages))


def _parse_message(reader: _Reader, data: Any, where: str, now: float) -> StoredMessage:
    item = reader.mapping(data, where)
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise reader.error(where, f'"role" must be "user" or "assistant" (got {role!r})')
    status = item.get("status", "complete")
    if status not in MESSAGE_STATUSES:
        raise reader.error(where, f'"status" {status!r} is unknown')
    message_id = reader.optional_int(item.get("id"), f"{where}.id")
    if message_id is None:
        raise reader.error(where, 'needs an "id"')
    stats = item.get("stats")
    if stats is not None:
        stats = dict(reader.mapping(stats, f"{where}.stats"))
    model = item.get("model")
    return StoredMessage(
        id=message_id,
        conversation_id=0,
        parent_id=reader.optional_int(item.get("parent"), f"{where}.parent"),
        role=_role(role),
        content=reader.text(item.get("content"), f"{where}.content"),
        created_at=reader.time(item.get("created_at"), f"{where}.created_at", now),
        # A reply that was streaming when exported is as good as interrupted.
        status="interrupted" if status == "streaming" else _status(status),
        model=reader.text(model, f"{where}.model") if model is not None else None,
        settings=reader.settings(item.get("settings"), f"{where}.settings"),
        seed=reader.optional_int(item.get("seed"), f"{where}.seed"),
        stats=stats,
    )


def _role(value: str) -> MessageRole:
    return "user" if value == "user" else "assistant"


def _status(value: str) -> MessageStatus:
    for status in MESSAGE_STATUSES:
        if status == value:
            return status
    raise ValueError(value)


class _Reader:
    """Type checks that raise a `TransferError` naming the source and the place."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, problem: str) -> TransferError:
        return TransferError(f"{self.source}: {where} {problem}.", path=self.source)

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, "must be a JSON object")
        return value

    def sequence(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(where, "must be a JSON list")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, "must be text")
        return value

    def optional_int(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, "must be a whole number")
        return value

    def time(self, value: Any, where: str, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                return parsed.timestamp()
        raise self.error(where, "must be an ISO 8601 time")

    def settings(self, value: Any, where: str) -> SamplingSettings | None:
        if value is None:
            return None
        try:
            return SamplingSettings.from_dict(dict(self.mapping(value, where)))
        except InvalidSettingError as exc:
            raise self.error(where, f"are invalid: {exc}") from exc
        except TypeError as exc:
            raise self.error(where, f"are malformed: {exc}") from exc


# --- times --------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _human_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "Untitled"
