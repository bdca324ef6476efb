"""Save a streaming reply as it grows, so a crash loses at most about a second of it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.chats.conversation import ReplyEnd, StoredMessage, reply_end
from app.core.chats.store import Store
from app.core.chats.store_base import Clock
from app.core.inference.events import GenerationDone, GenerationStats
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, pack


class ReplyWriter:
    """Saves one streaming reply as it grows, at most once per `interval` seconds.

    Feed it the text deltas and the token records that came with them (`append` is O(1));
    call `flush()` from a timer too, so text that arrived just before a pause in tokens is
    saved; `finish` or `finish_generation` at the end. Each save writes the text and the
    token records since the last save (packed, in one transaction), so a crash keeps both up
    to the same save; the finish packs all the records into one chunk. Use one writer from
    one thread. `stale` turns True when the reply was deleted or finished elsewhere: the
    caller should cancel the generation.
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
        self._records: list[TokenRecord] = []
        self._keeps_tokens = False
        self._saved_tokens = 0
        self._prefix = ""

    @property
    def records(self) -> Sequence[TokenRecord]:
        """The token records so far (do not modify)."""
        return self._records

    @property
    def text(self) -> str:
        """The reply so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def start_with(self, text: str, records: Sequence[TokenRecord]) -> None:
        """The reply begins with `text` and its `records`, decided before generation (a
        branch at a chosen token); the generation's own text follows them."""
        self._prefix = text
        self.append(text, records)

    def append(self, delta: str, records: Sequence[TokenRecord] | None = None) -> None:
        """Add text and the token records it came with (a reply given records at least
        once keeps token data); saves when `interval` has passed since the last save."""
        if records is not None:
            self._keeps_tokens = True
            self._records.extend(records)
        if not delta and not records:
            return
        if delta:
            self._parts.append(delta)
        self._unsaved = True
        if self._clock() - self._last_save >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Save the text now if anything is unsaved."""
        if not self._unsaved or self.stale:
            return
        tokens = None
        count = len(self._records)
        if count > self._saved_tokens:
            saved = self._saved_tokens
            tokens = (saved, pack(self._records[saved:], first_token=saved))
        self.stale = not self.store.update_streaming_reply(self.message_id, self.text, tokens)
        self._saved_tokens = count
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
        token_data = pack(self._records) if self._keeps_tokens else None
        return self.store.finish_reply(
            self.message_id,
            final,
            status,
            seed=seed,
            settings=settings,
            stats=stats,
            token_data=token_data,
        )

    def final_text(self, done: GenerationDone) -> str:
        """The text `finish_generation(done)` saves (the branch's start, then the reply)."""
        return self._prefix + done.text

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
            text=self.final_text(done),
            seed=done.stats.seed,
            settings=settings,
            stats=stats,
        )
