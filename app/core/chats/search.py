"""Full-text search results and the FTS5 query a person's typed text becomes."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.chats.conversation import MessageRole

SEARCH_LIMIT = 50
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"


@dataclass(frozen=True)
class SearchHit:
    """One message that matches a search.

    `snippet` is an excerpt with each match between `HIGHLIGHT_START` and `HIGHLIGHT_END`
    (control characters that never occur in typed text); use `segments()` or `marked()`.
    """

    conversation_id: int
    conversation_title: str
    message_id: int
    role: MessageRole
    snippet: str

    def segments(self) -> tuple[tuple[str, bool], ...]:
        """The snippet as (text, is_match) pieces, for rich-text rendering."""
        pieces: list[tuple[str, bool]] = []
        for i, chunk in enumerate(self.snippet.split(HIGHLIGHT_START)):
            if i == 0:
                if chunk:
                    pieces.append((chunk, False))
                continue
            match, _, rest = chunk.partition(HIGHLIGHT_END)
            if match:
                pieces.append((match, True))
            if rest:
                pieces.append((rest, False))
        return tuple(pieces)

    def marked(self, start: str = "[", end: str = "]") -> str:
        """The snippet with matches between `start` and `end`."""
        return self.snippet.replace(HIGHLIGHT_START, start).replace(HIGHLIGHT_END, end)


def fts_query(text: str) -> str:
    """A safe FTS5 query for what a person typed: every word must occur; the last is a prefix.

    Quotes each word, so operators and punctuation in the text cannot break the query.
    Returns "" when there is nothing to search for.
    """
    words = [w.replace('"', '""') for w in text.split()]
    words = [w for w in words if any(ch.isalnum() for ch in w)]
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


# --- the store ----------------------------------------------------------------------------
