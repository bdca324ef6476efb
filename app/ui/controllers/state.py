"""What the controllers share: the chat on show, the model in use, the reply streaming."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.chats.conversation import Conversation, StoredMessage
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import ConversationSnapshot
from app.core.inference.backend import Capabilities
from app.core.inference.gpu_fallback import Placement
from app.core.inference.load_options import LoadedModel
from app.core.inference.sampling import SamplingSettings, SettingsHolder


@dataclass
class ActiveReply:
    """A reply the worker is making: where it goes, what steers it, and where it runs
    (`placement`: the stats fields of `Placement.to_stats`, and others stored with the
    reply's stats). `engine_ids` maps the engine's message indices to stored ids."""

    request_id: int
    conversation_id: int
    message: StoredMessage
    writer: ReplyWriter
    holder: SettingsHolder
    cancelled: bool = False
    save_failed: bool = False
    placement: dict[str, Any] = field(default_factory=dict)
    engine_ids: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class RemoteInUse:
    """A model on a saved server, in use as the chat's model (remote controller)."""

    connection: str
    model: str
    base_url: str
    kind: str
    n_ctx: int
    capabilities: Capabilities

    @property
    def title(self) -> str:
        """ "model @ connection", as the window and the replies name it."""
        return f"{self.model} @ {self.connection}"

    def stats(self) -> dict[str, Any]:
        """What each reply stores about where it ran (`placement` shows in its summary)."""
        return {
            "placement": f"server {self.connection}",
            "backend": "remote",
            "connection": self.connection,
            "server_kind": self.kind,
        }


@dataclass
class ChatState:
    """The window's shared state, read by every controller and written by its owner.

    Attributes:
        conversation: The chat on show (None: a new chat, saved with its first message).
            Written by the conversations controller.
        shown: The branch and tree on show, as last read from the store (conversations).
        pending_settings, pending_prompt: Settings and system prompt of a new chat not
            saved yet (conversations).
        model, model_path, placement: The model in use, the file last asked for, and where
            it runs (models controller).
        loads_pending: Loads started and not ended (models controller).
        remote: The server's model in use instead of a local one (remote controller).
        active: The reply streaming in the chat on show (replies controller).
        shut_down: The window is closing; nothing new starts.
    """

    conversation: Conversation | None = None
    shown: ConversationSnapshot | None = None
    pending_settings: SamplingSettings | None = None
    pending_prompt: str | None = None
    model: LoadedModel | None = None
    model_path: Path | None = None
    placement: Placement | None = None
    loads_pending: int = 0
    remote: RemoteInUse | None = None
    active: ActiveReply | None = None
    shut_down: bool = False
    _request_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_request_id(self) -> int:
        """A new id for a request to the inference worker (replies and explorations share
        one sequence: the worker wants them increasing)."""
        return next(self._request_ids)

    @property
    def conversation_id(self) -> int | None:
        """Id of the chat on show, or None."""
        return self.conversation.id if self.conversation is not None else None

    @property
    def path(self) -> tuple[StoredMessage, ...]:
        """The branch on show."""
        return self.shown.path if self.shown is not None else ()

    def showing(self, conversation_id: int) -> bool:
        """True if that conversation is on show."""
        return self.conversation_id == conversation_id

    def can_send(self, *, ignore_busy: bool = False) -> bool:
        """A reply can start now (a model, no load, and no reply streaming unless ignored)."""
        return (
            not self.shut_down
            and self.has_model
            and not self.loads_pending
            and (ignore_busy or self.active is None)
        )

    @property
    def has_model(self) -> bool:
        """A model replies can come from: a local one or a server's."""
        return self.model is not None or self.remote is not None

    def reply_stats(self) -> dict[str, Any]:
        """Where a reply starting now runs, stored with its stats."""
        if self.remote is not None:
            return self.remote.stats()
        return dict(self.placement.to_stats()) if self.placement is not None else {}

    def model_name(self) -> str:
        """The model file's name ("model @ connection" for a server's), for its replies."""
        if self.remote is not None:
            return self.remote.title
        if self.model is not None:
            return self.model.info.path.name
        return self.model_path.name if self.model_path is not None else "unknown"
