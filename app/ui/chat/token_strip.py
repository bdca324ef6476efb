"""The draft as the model will read it: its tokens side by side, ids on hover.

Shared with the tokens view of replies: `visible_piece` shows whitespace and control
characters so a token boundary is never invisible.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QToolTip, QWidget

from app.ui.widgets import named

MAX_SHOWN_TOKENS = 400
"""A draft longer than this shows its first tokens and a count of the rest."""
_SHADES = ("rgba(127,127,127,0.18)", "rgba(127,127,127,0.45)")
_WHITESPACE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}


def visible_piece(piece: str) -> str:
    """A token's text with whitespace drawn (· for a space, ↵ for a new line) and other
    control characters as escapes, so the token is never empty on screen."""
    out = []
    for ch in piece:
        if ch in _WHITESPACE:
            out.append(_WHITESPACE[ch])
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) or "∅"


class DraftTokenStrip(QLabel):
    """The draft's tokens as alternately shaded boxes; hovering one shows its id.

    Object name: draftTokenStrip. Its accessible description lists the pieces, so a screen
    reader hears the split ("un | believ | able").
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "draftTokenStrip", "Your message as tokens")
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.linkHovered.connect(self._on_hovered)
        self._pieces: tuple[tuple[int, str], ...] = ()

    @property
    def pieces(self) -> tuple[tuple[int, str], ...]:
        """(token id, text) of every token shown."""
        return self._pieces

    def set_pieces(self, pieces: Sequence[tuple[int, str]]) -> None:
        """Show these tokens (id and text each)."""
        self._pieces = tuple(pieces)
        shown = self._pieces[:MAX_SHOWN_TOKENS]
        spans = [
            f'<a href="{i}" style="text-decoration:none;color:palette(text);'
            f'background:{_SHADES[i % 2]}">{html.escape(visible_piece(text))}</a>'
            for i, (_token, text) in enumerate(shown)
        ]
        rest = len(self._pieces) - len(shown)
        if rest > 0:
            spans.append(f" … and {rest:,} more")
        self.setText("<span>" + "\u200b".join(spans) + "</span>" if spans else "")
        self.setAccessibleDescription(
            f"{len(self._pieces)} tokens: " + " | ".join(text for _id, text in shown)
        )

    def tooltip_for(self, index: int) -> str:
        """The hover text of the token at `index`."""
        token, text = self._pieces[index]
        return f"token {index + 1} of {len(self._pieces)}: id {token}, {text!r}"

    @Slot(str)
    def _on_hovered(self, link: str) -> None:
        if link.isdigit() and int(link) < len(self._pieces):
            QToolTip.showText(QCursor.pos(), self.tooltip_for(int(link)), self)
        else:
            QToolTip.hideText()
