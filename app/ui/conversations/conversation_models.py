"""The sidebar's list models: one row per conversation or per search hit, the pin icon,
and the delegate that draws a hit's highlighted snippet."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QIcon,
    QPainter,
    QPalette,
    QPixmap,
    QPolygonF,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from app.core.chats.conversation import Conversation
from app.core.chats.search import SearchHit

ConversationIdRole = Qt.ItemDataRole.UserRole + 1
PinnedRole = Qt.ItemDataRole.UserRole + 2
MessageIdRole = Qt.ItemDataRole.UserRole + 3
SnippetHtmlRole = Qt.ItemDataRole.UserRole + 4

_ModelIndex = QModelIndex | QPersistentModelIndex


def _when(timestamp: float, now: float | None = None) -> str:
    """A short, local "last active" time: the clock today, else the date."""
    now = time.time() if now is None else now
    local, today = time.localtime(timestamp), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if local.tm_year == today.tm_year:
        return time.strftime("%d %b", local)
    return time.strftime("%d %b %Y", local)


_PIN_ICON: list[QIcon] = []


def pin_icon() -> QIcon:
    """The mark of a pinned conversation: a star, readable on light and dark backgrounds."""
    if not _PIN_ICON:
        size = 32
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#d4a017"))
        points = []
        for i in range(10):
            radius = size * (0.48 if i % 2 == 0 else 0.2)
            angle = math.pi / 2 + i * math.pi / 5
            points.append(
                QPointF(size / 2 + radius * math.cos(angle), size / 2 - radius * math.sin(angle))
            )
        painter.drawPolygon(QPolygonF(points))
        painter.end()
        _PIN_ICON.append(QIcon(pixmap))
    return _PIN_ICON[0]


def blank_icon() -> QIcon:
    """An empty icon the size of `pin_icon`, for rows that are not pinned."""
    if len(_PIN_ICON) < 2:
        pin_icon()
        pixmap = QPixmap(32, 32)
        pixmap.fill(Qt.GlobalColor.transparent)
        _PIN_ICON.append(QIcon(pixmap))
    return _PIN_ICON[1]


# --- models -------------------------------------------------------------------------------


class ConversationListModel(QAbstractListModel):
    """Conversations in the order the store lists them (pinned first, then most recent).

    Titles are editable in place: an edit emits `titleEdited` and shows the new title at
    once; the owner saves it.

    Signals:
        titleEdited(int, str): Conversation id and the title typed in (trimmed, non-empty).
    """

    titleEdited = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Conversation] = []

    def set_conversations(self, conversations: Sequence[Conversation]) -> None:
        """Replace every row (a reset: cheap for the few thousand chats a person has)."""
        self.beginResetModel()
        self._rows = list(conversations)
        self.endResetModel()

    def conversation(self, row: int) -> Conversation:
        """The conversation in `row`."""
        return self._rows[row]

    def row_of(self, conversation_id: int) -> int | None:
        """The row showing a conversation, or None."""
        for row, conversation in enumerate(self._rows):
            if conversation.id == conversation_id:
                return row
        return None

    def rowCount(self, parent: _ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        conversation = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return conversation.title
        if role == Qt.ItemDataRole.ToolTipRole:
            pinned = "Pinned · " if conversation.pinned else ""
            return f"{conversation.title}\n{pinned}last active {_when(conversation.updated_at)}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{conversation.title}, pinned" if conversation.pinned else conversation.title
        if role == Qt.ItemDataRole.DecorationRole:
            return pin_icon() if conversation.pinned else blank_icon()  # titles stay aligned
        if role == Qt.ItemDataRole.FontRole and conversation.pinned:
            font = QFont()
            font.setBold(True)
            return font
        if role == ConversationIdRole:
            return conversation.id
        if role == PinnedRole:
            return conversation.pinned
        return None

    def setData(
        self,
        index: _ModelIndex,
        value: Any,
        role: int = Qt.ItemDataRole.EditRole,
    ) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        title = " ".join(str(value).split())
        if not title or not 0 <= index.row() < len(self._rows):
            return False
        old = self._rows[index.row()]
        if title == old.title:
            return True
        self._rows[index.row()] = replace(old, title=title)
        self.dataChanged.emit(index, index)
        self.titleEdited.emit(old.id, title)
        return True

    def flags(self, index: _ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsEditable
            | Qt.ItemFlag.ItemNeverHasChildren
        )


class SearchResultsModel(QAbstractListModel):
    """Search hits, best first: the conversation's title and a snippet with matches marked."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hits: list[SearchHit] = []

    def set_hits(self, hits: Sequence[SearchHit]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self._hits = list(hits)
        self.endResetModel()

    def hit(self, row: int) -> SearchHit:
        """The hit in `row`."""
        return self._hits[row]

    def rowCount(self, parent: _ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._hits)

    def data(self, index: _ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        hit = self._hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{hit.conversation_title}\n{_snippet_text(hit)}"
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            who = "You" if hit.role == "user" else "Assistant"
            return f"{hit.conversation_title}: {who}: {_snippet_text(hit)}"
        if role == ConversationIdRole:
            return hit.conversation_id
        if role == MessageIdRole:
            return hit.message_id
        if role == SnippetHtmlRole:
            return snippet_html(hit)
        return None

    def flags(self, index: _ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )


def _snippet_text(hit: SearchHit) -> str:
    return " ".join("".join(text for text, _ in hit.segments()).split())


def snippet_html(hit: SearchHit) -> str:
    """A hit as rich text: the title in bold, then the snippet with each match in bold."""
    parts = []
    for text, is_match in hit.segments():
        escaped = html.escape(text.replace("\n", " "))
        parts.append(f"<b><u>{escaped}</u></b>" if is_match else escaped)
    who = "You" if hit.role == "user" else "Assistant"
    return (
        f"<b>{html.escape(hit.conversation_title)}</b><br>"
        f"<span>{html.escape(who)}: {''.join(parts)}</span>"
    )


class SearchHitDelegate(QStyledItemDelegate):
    """Draws a hit's title and snippet as rich text, matches in bold and underlined."""

    LINES = 3

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _ModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(index, opt)
        painter.save()
        rect: QRect = opt.rect.adjusted(4, 2, -4, -2)
        painter.translate(rect.topLeft())
        painter.setClipRect(QRect(QPoint(0, 0), rect.size()))
        context = QAbstractTextDocumentLayout.PaintContext()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        context.palette.setColor(QPalette.ColorRole.Text, opt.palette.color(role))
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: _ModelIndex) -> QSize:
        metrics = option.fontMetrics
        return QSize(200, metrics.lineSpacing() * self.LINES + 8)

    def _document(self, index: _ModelIndex, option: QStyleOptionViewItem) -> QTextDocument:
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(option.font)
        doc.setHtml(str(index.data(SnippetHtmlRole) or ""))
        doc.setTextWidth(max(10, option.rect.width() - 8))
        return doc


# --- the sidebar --------------------------------------------------------------------------
