"""Conversations as trees of stored messages: edits fork branches, regenerations are siblings.

A user message edited becomes a new sibling of the original under the same parent; a reply
regenerated becomes a new sibling of the original reply. The conversation shows one branch
at a time, the *active path*: from a root down to the selected leaf. Siblings are ordered
oldest first (by id), and "arrows" move between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.inference.events import GenerationStats, StopReason
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings

MessageRole = Literal["user", "assistant"]
MESSAGE_ROLES: tuple[MessageRole, ...] = ("user", "assistant")

MessageStatus = Literal["complete", "streaming", "cancelled", "interrupted", "error"]
MESSAGE_STATUSES: tuple[MessageStatus, ...] = (
    "complete",
    "streaming",
    "cancelled",
    "interrupted",
    "error",
)
ReplyEnd = Literal["complete", "cancelled", "interrupted", "error"]
REPLY_ENDS: tuple[ReplyEnd, ...] = ("complete", "cancelled", "interrupted", "error")

DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 60


@dataclass(frozen=True)
class StoredMessage:
    """One message of the tree as the store keeps it.

    `created_at` is Unix time in seconds. `model`, `settings`, `seed` and `stats` describe
    how an assistant reply was made (None for user messages); `stats` is
    `GenerationStats.to_dict()` output. A "streaming" reply is being written now;
    "interrupted" means the app stopped mid-reply (the partial text is kept).
    """

    id: int
    conversation_id: int
    parent_id: int | None
    role: MessageRole
    content: str
    created_at: float
    status: MessageStatus = "complete"
    model: str | None = None
    settings: SamplingSettings | None = None
    seed: int | None = None
    stats: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.role not in MESSAGE_ROLES:
            raise ValueError(f"stored messages are 'user' or 'assistant' (got {self.role!r})")
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {self.status!r}")

    @property
    def is_reply(self) -> bool:
        """True for assistant messages."""
        return self.role == "assistant"


@dataclass(frozen=True)
class Conversation:
    """A conversation's own fields; its messages live in a `MessageTree`.

    `settings` overrides the global default sampler settings when not None.
    `active_leaf_id` is the last message of the branch on show (None: the newest one).
    Times are Unix seconds; `updated_at` moves when messages are added, finished or deleted.
    """

    id: int
    title: str
    created_at: float
    updated_at: float
    pinned: bool = False
    settings: SamplingSettings | None = None
    system_prompt: str = ""
    active_leaf_id: int | None = None


class MessageTree:
    """The messages of one conversation, indexed for path and sibling queries.

    Built once per load (O(n)); every query after that is O(depth) or better.
    """

    def __init__(self, messages: Iterable[StoredMessage]) -> None:
        ordered = sorted(messages, key=lambda m: m.id)
        self._by_id: dict[int, StoredMessage] = {m.id: m for m in ordered}
        self._children: dict[int | None, list[StoredMessage]] = {}
        for message in ordered:
            self._children.setdefault(message.parent_id, []).append(message)
        self.messages: tuple[StoredMessage, ...] = tuple(ordered)

    def __len__(self) -> int:
        return len(self.messages)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._by_id

    def get(self, message_id: int) -> StoredMessage:
        """The message with this id (KeyError if it is not in the tree)."""
        return self._by_id[message_id]

    def children(self, message_id: int | None) -> tuple[StoredMessage, ...]:
        """Direct replies to a message, oldest first; `None` gives the roots."""
        return tuple(self._children.get(message_id, ()))

    def siblings(self, message_id: int) -> tuple[StoredMessage, ...]:
        """The message and its alternative versions (same parent), oldest first."""
        return self.children(self.get(message_id).parent_id)

    def sibling_position(self, message_id: int) -> tuple[int, int]:
        """(index among its siblings, number of siblings): "2 / 3" is (1, 3)."""
        siblings = self.siblings(message_id)
        ids = [m.id for m in siblings]
        return ids.index(message_id), len(ids)

    def path_to(self, message_id: int) -> tuple[StoredMessage, ...]:
        """From the root down to this message, inclusive."""
        path: list[StoredMessage] = []
        current: int | None = message_id
        while current is not None:
            message = self._by_id[current]
            path.append(message)
            current = message.parent_id
        path.reverse()
        return tuple(path)

    def newest_leaf(self, message_id: int | None) -> int | None:
        """The leaf reached from a message by following the newest child at every step.

        `None` starts from the newest root; returns None for an empty tree.
        """
        current = message_id
        while True:
            children = self._children.get(current)
            if not children:
                return current
            current = children[-1].id

    def active_path(self, leaf_id: int | None) -> tuple[StoredMessage, ...]:
        """The branch on show: root to `leaf_id`, continued down the newest children.

        An unknown or None `leaf_id` shows the newest branch.
        """
        start = leaf_id if leaf_id in self._by_id else None
        leaf = self.newest_leaf(start)
        return self.path_to(leaf) if leaf is not None else ()

    def subtree_ids(self, message_id: int) -> tuple[int, ...]:
        """The message and every message below it."""
        found: list[int] = []
        stack = [message_id]
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(m.id for m in self._children.get(current, ()))
        return tuple(found)


def active_path(
    messages: Iterable[StoredMessage], leaf_id: int | None
) -> tuple[StoredMessage, ...]:
    """Root to the selected leaf (see `MessageTree.active_path`)."""
    return MessageTree(messages).active_path(leaf_id)


def siblings(messages: Iterable[StoredMessage], message_id: int) -> tuple[StoredMessage, ...]:
    """A message and its alternative versions, oldest first."""
    return MessageTree(messages).siblings(message_id)


def sibling_position(messages: Iterable[StoredMessage], message_id: int) -> tuple[int, int]:
    """(index among its siblings, number of siblings)."""
    return MessageTree(messages).sibling_position(message_id)


def to_engine_messages(
    path: Sequence[StoredMessage], system_prompt: str = ""
) -> tuple[Message, ...]:
    """What the model reads: the system prompt (if any), then the path.

    Error replies are skipped, and so are replies with no text (cancelled before the first
    token, or still streaming with nothing yet).
    """
    return engine_messages_with_ids(path, system_prompt)[0]


def engine_messages_with_ids(
    path: Sequence[StoredMessage], system_prompt: str = ""
) -> tuple[tuple[Message, ...], tuple[int | None, ...]]:
    """`to_engine_messages` and, for each message it gives, the stored message's id (None
    for the system prompt), so indices the engine reports map back to the chat."""
    messages: list[Message] = [Message("system", system_prompt)] if system_prompt else []
    ids: list[int | None] = [None] if system_prompt else []
    for stored in path:
        if stored.status == "error" or (stored.is_reply and not stored.content):
            continue
        messages.append(Message(stored.role, stored.content))
        ids.append(stored.id)
    return tuple(messages), tuple(ids)


def unseen_message_ids(message: StoredMessage) -> tuple[int, ...]:
    """Ids of the messages the overflow policy left out of this reply's prompt."""
    raw = (message.stats or {}).get("unseen_message_ids")
    return tuple(i for i in raw if isinstance(i, int)) if isinstance(raw, list) else ()


def reply_end(stats: GenerationStats) -> ReplyEnd:
    """The status a finished generation leaves its reply in."""
    if stats.stop_reason is StopReason.INTERRUPTED:
        return "interrupted"  # a remote server's stream broke mid-reply
    return "cancelled" if stats.stop_reason is StopReason.CANCELLED else "complete"


def title_from_text(text: str, limit: int = TITLE_LENGTH) -> str:
    """A conversation title from the first message: its first line, shortened."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return DEFAULT_TITLE
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip() + "…"


_STOP_WORDS = {
    "end_of_turn": "end of turn",
    "stop_string": "stop string",
    "max_tokens": "max tokens",
    "cancelled": "cancelled",
    "context_full": "context full",
}


def settings_summary(settings: SamplingSettings) -> str:
    """The sampler settings in one line: the main ones always, the rest when switched on."""
    parts = [
        f"temperature {settings.temperature:g}",
        f"top-k {settings.top_k}",
        f"top-p {settings.top_p:g}",
        f"min-p {settings.min_p:g}",
    ]
    if settings.typical_p != 1.0:
        parts.append(f"typical-p {settings.typical_p:g}")
    if settings.repeat_penalty != 1.0:
        parts.append(f"repeat penalty {settings.repeat_penalty:g}")
    if settings.presence_penalty:
        parts.append(f"presence penalty {settings.presence_penalty:g}")
    if settings.frequency_penalty:
        parts.append(f"frequency penalty {settings.frequency_penalty:g}")
    if settings.mirostat:
        parts.append(f"mirostat {settings.mirostat}")
    if settings.max_tokens is not None:
        parts.append(f"max tokens {settings.max_tokens}")
    return ", ".join(parts)


def reply_summary(message: StoredMessage) -> str:
    """How a reply was made, in one line: tokens, speed, first token, stop, seed, settings.

    A reply that recorded where it ran ("placement", see `Placement.to_stats`) shows it
    with its prefill and decode speeds: "42 tokens · GPU 16/33 + CPU · prefill 850.0
    tokens/s · decode 42.0 tokens/s · first token 123 ms · …". Older replies show the
    decode speed alone. Empty for user messages and for replies with nothing recorded.
    """
    if not message.is_reply:
        return ""
    parts: list[str] = []
    stats = message.stats or {}
    tokens, speed, ttft, prefill = (
        _number(stats, k) for k in ("completion_tokens", "decode_tps", "ttft_ms", "prefill_tps")
    )
    placement = stats.get("placement")
    if tokens is not None:
        parts.append(f"{tokens:.0f} tokens")
    prompt, cached = _number(stats, "prompt_tokens"), _number(stats, "cached_tokens")
    if prompt is not None:
        read = prompt - (cached or 0)
        parts.append(f"prompt {prompt:.0f} tokens ({cached or 0:.0f} cached, {read:.0f} read)")
    branched = stats.get("branched_at")
    if isinstance(branched, int):
        parts.append(
            f"branched at token {branched}: {stats.get('branched_from', '')!r} → "
            f"{stats.get('branched_to', '')!r}"
        )
    if isinstance(placement, str) and placement:
        parts.append(placement)
        if prefill:  # 0: the whole prompt came from the cache
            parts.append(f"prefill {prefill:.1f} tokens/s")
        if speed is not None:
            parts.append(f"decode {speed:.1f} tokens/s")
    elif speed is not None:
        parts.append(f"{speed:.1f} tokens/s")
    if ttft is not None:
        parts.append(f"first token {ttft:.0f} ms")
    if "stop_reason" in stats:
        reason = str(stats["stop_reason"])
        parts.append(f"stop: {_STOP_WORDS.get(reason, reason)}")
    if message.status not in ("complete", "cancelled") or (
        message.status == "cancelled" and "stop_reason" not in stats
    ):
        parts.append(message.status)
    if message.seed is not None:
        parts.append(f"seed {message.seed}")
    if message.settings is not None:
        parts.append(settings_summary(message.settings))
    return " · ".join(parts)


def _number(stats: Mapping[str, Any], key: str) -> float | None:
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
