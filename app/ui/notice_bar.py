"""The notice bar above the chat: errors and hints a person should read, until dismissed."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.ui.widgets import named


class NoticeBar(QFrame):
    """One notice at a time, with "Open model…" when the notice is about a missing model.

    Object names: noticeBar, noticeLabel, noticeOpenButton, noticeDismissButton.

    Signals:
        openModelRequested(): The person pressed "Open model…".
    """

    openModelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "noticeBar", "Notice bar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._label = QLabel()
        named(self._label, "noticeLabel", "Notice")
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._open = QPushButton("Open model…")
        named(self._open, "noticeOpenButton", "Open a model file")
        self._open.clicked.connect(self.openModelRequested)
        dismiss = QPushButton("Dismiss")
        named(dismiss, "noticeDismissButton", "Dismiss notice")
        dismiss.clicked.connect(self.clear)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self._label, 1)
        row.addWidget(self._open)
        row.addWidget(dismiss)
        self.hide()

    @Slot(str)
    def show_notice(self, text: str, offer_open: bool = False) -> None:
        """Show `text`, optionally with the "Open model…" button."""
        self._label.setText(text)
        self._open.setVisible(offer_open)
        self.show()

    @Slot()
    def clear(self) -> None:
        """Hide the bar."""
        self.hide()
        self._label.clear()

    @property
    def text(self) -> str:
        """The notice on show ("" when none)."""
        return self._label.text() if not self.isHidden() else ""
