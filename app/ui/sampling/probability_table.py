"""A keyboard-navigable table whose probability cells are drawn as bars (palette colours)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

BAR_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""Item data: the bar's length, 0 to 1 (None: no bar)."""
STRONG_ROLE = int(Qt.ItemDataRole.UserRole) + 2
"""Item data: True to draw the bar in the highlight colour, else the mid colour."""


class BarDelegate(QStyledItemDelegate):
    """Paints a cell's `BAR_ROLE` fraction as a bar behind its text."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        fraction = index.data(BAR_ROLE)
        if isinstance(fraction, float) and fraction > 0:
            rect: QRect = option.rect
            palette: QPalette = option.palette
            role = (
                QPalette.ColorRole.Highlight if index.data(STRONG_ROLE) else QPalette.ColorRole.Mid
            )
            colour = palette.color(role)
            colour.setAlpha(150)
            width = max(1, int((rect.width() - 4) * min(1.0, fraction)))
            painter.fillRect(QRect(rect.x() + 2, rect.y() + 3, width, rect.height() - 6), colour)
        super().paint(painter, option, index)


class ProbabilityTable(QTableWidget):
    """Rows of text cells, some with bars; read-only, row selection, arrow keys move."""

    def __init__(self, headers: list[str], parent: QWidget | None = None) -> None:
        super().__init__(0, len(headers), parent)
        self.setHorizontalHeaderLabels(headers)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setTabKeyNavigation(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setItemDelegate(BarDelegate(self))

    def set_rows(self, rows: list[list[tuple[str, float | None, bool]]]) -> None:
        """Replace the rows: each cell is (text, bar fraction or None, strong)."""
        self.setUpdatesEnabled(False)
        try:
            self.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, (text, bar, strong) in enumerate(row):
                    item = self.item(r, c)
                    if item is None:
                        item = QTableWidgetItem()
                        self.setItem(r, c, item)
                    item.setText(text)
                    item.setData(BAR_ROLE, bar)
                    item.setData(STRONG_ROLE, strong)
        finally:
            self.setUpdatesEnabled(True)

    def cell_text(self, row: int, column: int) -> str:
        """The text of one cell ('' when empty)."""
        item = self.item(row, column)
        return item.text() if item is not None else ""
