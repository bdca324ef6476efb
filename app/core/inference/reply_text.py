"""Assemble a streamed reply from token bytes: whole UTF-8 characters, stop strings held back."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class ReplyText:
    """Collects token pieces and says what may be shown now.

    A piece is released only when it is whole UTF-8 and cannot be the start of a stop
    string; text from a stop string on is never released.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._text = ""
        self._released = 0
        self.stopped = False

    def set_stops(self, stops: Sequence[str]) -> None:
        """Replace the stop strings (settings can change mid-reply)."""
        self._stops = tuple(s for s in stops if s)

    @property
    def text(self) -> str:
        """The reply so far: released text (and, after `finish`, everything)."""
        return self._text[: self._released]

    def add(self, piece: bytes) -> str:
        """Add one token's bytes; return the newly releasable text ('' if none)."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(piece)
        if self._stops:
            hit = self._find_stop()
            if hit is not None:
                self.stopped = True
                self._text = self._text[:hit]
                return self._release(len(self._text))
            return self._release(len(self._text) - self._held_back())
        return self._release(len(self._text))

    def finish(self) -> str:
        """End of reply: release whatever was held back (never text after a stop string)."""
        if not self.stopped:
            self._text += self._decoder.decode(b"", final=True)
        return self._release(len(self._text))

    def _release(self, end: int) -> str:
        if end <= self._released:
            return ""
        out = self._text[self._released : end]
        self._released = end
        return out

    def _find_stop(self) -> int | None:
        longest = max(len(s) for s in self._stops)
        start = max(0, self._released - longest)
        hits = [i for s in self._stops if (i := self._text.find(s, start)) != -1]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        tail = self._text[self._released :]
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(tail)), best, -1):
                if stop.startswith(tail[-n:]):
                    best = n
                    break
        return best
