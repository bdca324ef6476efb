"""Small helpers every widget module shares."""

from __future__ import annotations

from typing import Literal

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QAbstractScrollArea, QLabel, QWidget

FLAT_SCROLL_BAR = """
QScrollBar:vertical { width: 12px; margin: 0; background: palette(GROOVE); }
QScrollBar::handle:vertical {
    min-height: 32px; margin: 2px; border-radius: 4px; background: palette(mid);
}
QScrollBar::handle:vertical:hover, QScrollBar::handle:vertical:pressed {
    background: palette(dark);
}
QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical { height: 0; }
QScrollBar::add-page:vertical, QScrollBar::sub-page:vertical { background: none; }
"""
"""Hearth's vertical scroll bar: a flat handle on the background of what it scrolls
(GROOVE: a palette role), no arrows. The chat's repaints at every new line of a streaming
reply (its range grows), and Fusion's gradients cost ~150 µs a paint against ~40 for this
(measured with a bare `QScrollArea`, offscreen); the other panes share the look."""


def flat_scroll_bar(area: QAbstractScrollArea, groove: Literal["base", "window"]) -> None:
    """Give `area`'s vertical scroll bar the flat look (`FLAT_SCROLL_BAR`), its groove in
    the palette's `groove` colour: "base" for text and lists, "window" for panels."""
    area.verticalScrollBar().setStyleSheet(FLAT_SCROLL_BAR.replace("GROOVE", groove))


def named(widget: QWidget, object_name: str, accessible_name: str) -> None:
    """Give a widget its object name (tests and style sheets find it by this) and the name
    screen readers say."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)


class WrappingLabel(QLabel):
    """A word-wrapped label that remembers its height at the widths it was asked about.

    QLabel lays its text out again at every `heightForWidth`, and a layout asks each time
    a sibling changes size: for a label beside a streaming reply that is several times a
    chunk. The heights are forgotten when the text, font or style changes.
    """

    _KEPT = 8  # widths remembered (a resize asks about many)

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self._heights: dict[int, int] = {}

    def setText(self, text: str) -> None:
        self._heights.clear()
        super().setText(text)

    def heightForWidth(self, width: int) -> int:
        height = self._heights.get(width)
        if height is None:
            if len(self._heights) >= self._KEPT:
                self._heights.clear()
            height = self._heights[width] = super().heightForWidth(width)
        return height

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in _LAYOUT_CHANGES:
            self._heights.clear()
        super().changeEvent(event)


_LAYOUT_CHANGES = (
    QEvent.Type.FontChange,
    QEvent.Type.StyleChange,
    QEvent.Type.ContentsRectChange,
    QEvent.Type.LayoutDirectionChange,
)
