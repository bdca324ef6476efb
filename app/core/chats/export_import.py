"""Export conversations as JSON or Markdown, and import Hearth JSON back into the store.

The JSON document::

    {"format": "hearth.conversations", "version": 1, "exported_at": "...Z",
     "conversations": [{"id", "title", "created_at", "updated_at", "pinned",
                        "system_prompt", "settings", "active_leaf", "messages": [...]}]}

Each message carries OpenAI-style `role` and `content`, plus `id`, `parent` (the id of the
message it answers, null for the first), `status`, `created_at`, `model`, `settings`, `seed`
and `stats`; replies with token data add `logprobs` in the OpenAI shape
(`{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`, see
`token_data.to_openai`). Messages are a flat list in which parents come before their
children: the tree is in the `parent` links (a nested tree would overflow JSON parsers on
long chats). Times are ISO 8601 in UTC. Markdown shows the branch on show of each
conversation, without token data.

Export skips what it cannot read (a damaged row) and reports it, keeping the rest. Import
checks the whole file first (`import_checks`) and writes it in one transaction: all or
nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
from app.core.chats.import_checks import DocumentReader, TransferError, iso_time
from app.core.chats.store import Store
from app.core.errors import StoreError
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import pack, to_openai

__all__ = ["TransferError"]

log = logging.getLogger(__name__)

FORMAT = "hearth.conversations"
VERSION = 1

_DAMAGE = (StoreError, sqlite3.Error, ValueError, TypeError, KeyError, OverflowError, OSError)
"""What reading a damaged row raises (bad JSON, a malformed page, a time out of range)."""


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation and its messages read from a file, ids as in the file.

    `token_data` maps message ids (as in the file) to packed token data.
    """

    conversation: Conversation
    messages: tuple[StoredMessage, ...]
    token_data: dict[int, bytes] = field(default_factory=dict)


# --- export -------------------------------------------------------------------------------


def export_document(
    store: Store, conversation_ids: Iterable[int] | None = None, *, skipped: list[str] | None = None
) -> dict[str, Any]:
    """The JSON document for some conversations (default: all not in the bin).

    A conversation that cannot be read is left out, and a reply whose token data cannot
    be read goes without it: each is described in `skipped` (and logged).
    """
    problems = skipped if skipped is not None else []
    conversations = []
    for i in _ids(store, conversation_ids):
        try:
            conversations.append(_conversation_json(store, i, problems))
        except _DAMAGE as exc:
            _skip(problems, f"conversation {i} was left out: it cannot be read ({exc})")
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": iso_time(time.time()),
        "conversations": conversations,
    }


def export_json(
    store: Store, conversation_ids: Iterable[int] | None = None, *, skipped: list[str] | None = None
) -> str:
    """The JSON document as text (UTF-8 friendly, indented); see `export_document`."""
    document = export_document(store, conversation_ids, skipped=skipped)
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def export_markdown(
    store: Store, conversation_ids: Iterable[int] | None = None, *, skipped: list[str] | None = None
) -> str:
    """The branch on show of each conversation as readable Markdown (damaged ones skipped)."""
    problems = skipped if skipped is not None else []
    parts = []
    for conversation_id in _ids(store, conversation_ids):
        try:
            snapshot = store.snapshot(conversation_id)
            parts.append(conversation_markdown(snapshot.conversation, snapshot.path))
        except _DAMAGE as exc:
            _skip(
                problems, f"conversation {conversation_id} was left out: it cannot be read ({exc})"
            )
    return "\n---\n\n".join(parts)


def _skip(problems: list[str], problem: str) -> None:
    log.warning("export: %s", problem)
    problems.append(problem)


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
        try:
            return [c.id for c in store.list_conversations()]
        except _DAMAGE as exc:
            raise TransferError(
                f"Cannot list the conversations in {store.path} ({exc}); export them one by "
                "one with --conversation ID."
            ) from exc
    return list(conversation_ids)


def _conversation_json(store: Store, conversation_id: int, problems: list[str]) -> dict[str, Any]:
    snapshot = store.snapshot(conversation_id)
    conversation = snapshot.conversation
    with_tokens = store.messages_with_token_data(conversation_id)
    messages = []
    for message in snapshot.tree.messages:
        item = _message_json(message)
        if message.id in with_tokens:
            try:
                data = store.token_data(message.id)
            except _DAMAGE as exc:
                _skip(
                    problems,
                    f'the token data of message {message.id} in "{conversation.title}" was left '
                    f"out ({exc})",
                )
            else:
                if data is not None:
                    item["logprobs"] = to_openai(data)
        messages.append(item)
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": iso_time(conversation.created_at),
        "updated_at": iso_time(conversation.updated_at),
        "pinned": conversation.pinned,
        "system_prompt": conversation.system_prompt,
        "settings": _settings_json(conversation.settings),
        "active_leaf": snapshot.path[-1].id if snapshot.path else None,
        "messages": messages,
    }


def _message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "id": message.id,
        "parent": message.parent_id,
        "status": message.status,
        "created_at": iso_time(message.created_at),
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

    The whole file is checked before anything is written, then written in one
    transaction: all of it or nothing.

    Raises:
        TransferError: the file is missing, unreadable, not JSON, not a Hearth export, or
            holds a value export could not write back (the message names the place).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TransferError(f"{path}: no such file.", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferError(f"Cannot read {path}: {exc}", path=path) from exc
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise TransferError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            path=path,
        ) from exc
    except RecursionError as exc:
        raise TransferError(
            f"{path} is nested too deeply to be a Hearth export; nothing was imported.", path=path
        ) from exc
    except ValueError as exc:
        raise TransferError(f"{path} is not valid JSON: {exc}.", path=path) from exc
    return import_document(store, data, source=str(path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def import_document(
    store: Store, data: Any, *, source: str = "the import"
) -> tuple[Conversation, ...]:
    """Import a parsed JSON document (see `import_file`): checked whole, then one transaction."""
    records = parse_document(data, source=source)
    try:
        with store.transaction():
            return tuple(
                store.add_conversation_tree(r.conversation, r.messages, r.token_data)
                for r in records
            )
    except (StoreError, sqlite3.Error) as exc:
        raise TransferError(f"{source}: nothing was imported: {exc}", path=source) from exc


def parse_document(data: Any, *, source: str = "the import") -> tuple[ConversationRecord, ...]:
    """Check a JSON document and turn it into records; nothing is written.

    Raises:
        TransferError: naming `source`, the place in the document and the conversation.
    """
    reader = DocumentReader(source)
    try:
        return _parse_document(reader, data)
    except RecursionError as exc:
        raise reader.error("the document", "is nested too deeply") from exc


def _parse_document(reader: DocumentReader, data: Any) -> tuple[ConversationRecord, ...]:
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
    records = []
    for i, item in enumerate(items):
        reader.conversation = f"conversation {i + 1}"
        records.append(_parse_conversation(reader, item, f"conversations[{i}]"))
    return tuple(records)


def _parse_conversation(reader: DocumentReader, data: Any, where: str) -> ConversationRecord:
    item = reader.mapping(data, where)
    title = reader.text(item.get("title", ""), f"{where}.title")
    reader.conversation = f'{reader.conversation}, "{title}"'
    now = time.time()
    messages: list[StoredMessage] = []
    token_data: dict[int, bytes] = {}
    seen: set[int] = set()
    for i, raw in enumerate(reader.sequence(item.get("messages", []), f"{where}.messages")):
        place = f"{where}.messages[{i}]"
        message = _parse_message(reader, raw, place, now)
        if message.id in seen:
            raise reader.error(place, f"repeats id {message.id}")
        if message.parent_id is not None and message.parent_id not in seen:
            raise reader.error(
                place,
                f"its parent {message.parent_id} is not an earlier message of this conversation",
            )
        logprobs = reader.mapping(raw, place).get("logprobs")
        if logprobs is not None:
            if message.role != "assistant":
                raise reader.error(f"{place}.logprobs", "belongs to replies only")
            records, top_n, changes = reader.logprobs(logprobs, f"{place}.logprobs")
            token_data[message.id] = pack(records, top_n=top_n, changes=changes)
        seen.add(message.id)
        messages.append(message)
    leaf = reader.optional_int(item.get("active_leaf"), f"{where}.active_leaf")
    conversation = Conversation(
        id=0,
        title=title,
        created_at=reader.time(item.get("created_at"), f"{where}.created_at", now),
        updated_at=reader.time(item.get("updated_at"), f"{where}.updated_at", now),
        pinned=reader.flag(item.get("pinned", False), f"{where}.pinned"),
        settings=reader.settings(item.get("settings"), f"{where}.settings"),
        system_prompt=reader.text(item.get("system_prompt", ""), f"{where}.system_prompt"),
        active_leaf_id=leaf if leaf in seen else None,
    )
    return ConversationRecord(conversation, tuple(messages), token_data)


def _parse_message(reader: DocumentReader, data: Any, where: str, now: float) -> StoredMessage:
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
        stats = dict(reader.json_value(reader.mapping(stats, f"{where}.stats"), f"{where}.stats"))
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
        seed=reader.seed(item.get("seed"), f"{where}.seed"),
        stats=stats,
    )


def _role(value: str) -> MessageRole:
    return "user" if value == "user" else "assistant"


def _status(value: str) -> MessageStatus:
    for status in MESSAGE_STATUSES:
        if status == value:
            return status
    raise ValueError(value)


# --- times --------------------------------------------------------------------------------


def _human_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "Untitled"
