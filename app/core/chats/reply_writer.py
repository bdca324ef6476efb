"""Save a streaming reply as it grows, so a crash loses at most about a second of it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from app.core.chats.conversation import ReplyEnd, StoredMessage, reply_end
from app.core.chats.store import Clock, Store
from app.core.inference.events import GenerationDone, GenerationStats
from app.core.inference.sampling import SamplingSettings


class ReplyWriter:
    """Saves one streaming reply as it grows, at most once per `interval` seconds.

    Feed it the text deltas (`append` is O(1)); call `flush()` from a timer too, so text that
    arrived just before a pause in tokens is saved; `finish` or `finish_generation` at the
    end. Use one writer from one thread. `stale` turns True when the reply was deleted or
    finished elsewhere: the caller should cancel the generation.
    """

    def __init__(
        self,
        store: Store,
        message_id: int,
        *,
        interval: float = 0.5,
        clock: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.message_id = message_id
        self.interval = interval
        self.stale = False
        self._clock = clock
        self._parts: list[str] = []
        self._unsaved = False
        self._last_save = clock()

    @property
    def text(self) -> str:
        """The reply so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def append(self, delta: str) -> None:
        """Add text; saves when `interval` has passed since the last save."""
        if not delta:
            return
        self._parts.append(delta)
        self._unsaved = True
        if self._clock() - self._last_save >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Save the text now if anything is unsaved."""
        if not self._unsaved or self.stale:
            return
        self.stale = not self.store.update_streaming_reply(self.message_id, self.text)
        self._unsaved = False
        self._last_save = self._clock()

    def finish(
        self,
        status: ReplyEnd,
        *,
        text: str | None = None,
        seed: int | None = None,
        settings: SamplingSettings | None = None,
        stats: GenerationStats | Mapping[str, Any] | None = None,
    ) -> StoredMessage | None:
        """Save the final reply (`text` defaults to what was appended); see `finish_reply`."""
        final = self.text if text is None else text
        self._unsaved = False
        return self.store.finish_reply(
            self.message_id, final, status, seed=seed, settings=settings, stats=stats
        )

    def finish_generation(
        self,
        done: GenerationDone,
        *,
        settings: SamplingSettings | None = None,
        extra_stats: Mapping[str, Any] | None = None,
    ) -> StoredMessage | None:
        """Save a reply from the engine's last event: its text, stats, seed and status.

        `extra_stats` are stored with the engine's stats (where the reply ran, say).
        """
        stats: GenerationStats | dict[str, Any] = done.stats
        if extra_stats:
            stats = {**done.stats.to_dict(), **extra_stats}
        return self.finish(
            reply_end(done.stats),
            text=done.text,
            seed=done.stats.seed,
            settings=settings,
            stats=stats,
        )


# --- row conversion -----------------------------------------------------------------------
