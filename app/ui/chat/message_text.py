"""A message's text: a read-only, selectable text browser as tall as its content."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QRect, QSize, QSizeF, Qt, Slot
from PySide6.QtGui import (
    QColor,
    QFontDatabase,
    QPalette,
    QTextBlock,
    QTextCursor,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QWidget

from app.ui.chat.markdown_render import document_style_sheet
from app.ui.widgets import named as _named


def keep_shaped_glyphs(block: QTextBlock) -> None:
    """Keep the shaped glyphs of `block` and of the blocks after it between paints.

    Qt drops a paragraph's shaped glyphs after each layout and shapes the text again on
    every paint. A streaming reply's last paragraph is laid out and painted once per
    chunk, so keeping them saves a shaping pass per paint (one per token in the tokens
    view, where each token is its own run). Costs memory in proportion to the text.
    """
    while block.isValid():
        layout = block.layout()
        if layout is not None and not layout.cacheEnabled():
            layout.setCacheEnabled(True)
        block = block.next()


class MessageText(QTextBrowser):
    """A message's text: read-only, selectable, as tall as its content (no scroll bar).

    Links arrive through `QTextBrowser.anchorClicked` (it never follows them itself).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "messageText", "Message text")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setOpenLinks(False)
        self.setUndoRedoEnabled(False)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextBrowserInteraction
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.viewport().setAutoFillBackground(False)
        # Text sits at the top left and a change of width lays it all out (and repaints it)
        # again, so a taller text needs only its new strip painted.
        self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Base, QColor(Qt.GlobalColor.transparent))
        self.setPalette(palette)
        document = self.document()
        document.setDocumentMargin(2)
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        document.setDefaultStyleSheet(document_style_sheet(fixed.family()))
        layout = document.documentLayout()
        layout.documentSizeChanged.connect(self._fit_height)
        self._cursor: QTextCursor | None = None

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # the chat scrolls, not the message

    @Slot(QSizeF)
    def _fit_height(self, size: QSizeF) -> None:
        height = math.ceil(size.height()) + 2 * self.frameWidth()
        if height != self.height():
            self.setFixedHeight(height)

    def show_html(self, html: str) -> None:
        """Replace the text with rendered HTML."""
        self._cursor = None
        self.setHtml(html)

    def start_plain(self, text: str, *, continued: bool = False) -> None:
        """Replace the text with plain text that `append_plain` will extend.

        `continued`: this text goes on from the segment above (no top margin).
        """
        self.setPlainText(text)
        if continued:
            frame = self.document().rootFrame()
            frame_format = frame.frameFormat()
            frame_format.setTopMargin(0)
            frame.setFrameFormat(frame_format)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._cursor = cursor

    def append_plain(self, text: str) -> None:
        """Add plain text at the end (only the last paragraph is laid out again)."""
        if self._cursor is None:
            self.start_plain(self.toPlainText())
        assert self._cursor is not None
        with self.appending():
            self._cursor.insertText(text)

    @contextmanager
    def appending(self) -> Iterator[None]:
        """Around text added at the end: repaint only the lines it can change.

        Qt repaints a whole paragraph when text is added to it; a streaming reply's last
        paragraph would be repainted whole on every chunk. Lines are broken greedily, so
        text added at the end changes only the last line (and the lines after it); the last
        two lines of the paragraph are repainted, for a margin, and everything below them.
        The paragraph's shaped glyphs are kept (`keep_shaped_glyphs`).
        """
        document = self.document()
        layout = document.documentLayout()
        block = document.lastBlock()
        keep_shaped_glyphs(block)
        top = layout.blockBoundingRect(block).top()
        lines = block.layout()
        if lines is not None and lines.lineCount() > 1:
            top += lines.lineAt(lines.lineCount() - 2).y()
        quiet = layout.blockSignals(True)  # its `update` would repaint the whole paragraph
        try:
            yield
        finally:
            layout.blockSignals(quiet)
            keep_shaped_glyphs(block)
            size = layout.documentSize()
            self._fit_height(size)
            shift = self.verticalScrollBar().value()
            first = math.floor(top) - shift
            self.viewport().update(
                QRect(0, first, self.viewport().width(), math.ceil(size.height()) - shift - first)
            )
