"""Small helpers every widget module shares."""

from __future__ import annotations

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QLabel, QWidget


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
