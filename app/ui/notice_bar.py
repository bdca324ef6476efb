"""The notice bar above the chat: errors and hints a person should read, until dismissed."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.ui.widgets import named


class NoticeBar(QFrame):
    """One notice at a time, with "Open model…" when the notice is about a missing model,
    or "Use plain transcript" when the model's chat template failed.

    Object names: noticeBar, noticeLabel, noticeOpenButton, noticePlainTranscriptButton,
    noticeDismissButton.

    Signals:
        openModelRequested(): The person pressed "Open model…".
        plainTranscriptRequested(): The person pressed "Use plain transcript".
    """

    openModelRequested = Signal()
    plainTranscriptRequested = Signal()

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
        self._plain = QPushButton("Use plain transcript")
        named(self._plain, "noticePlainTranscriptButton", "Use a plain transcript format")
        self._plain.setToolTip(
            "Format the chat as plain 'User:/Assistant:' lines instead of the model's template"
        )
        self._plain.clicked.connect(self._on_plain)
        dismiss = QPushButton("Dismiss")
        named(dismiss, "noticeDismissButton", "Dismiss notice")
        dismiss.clicked.connect(self.clear)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self._label, 1)
        row.addWidget(self._open)
        row.addWidget(self._plain)
        row.addWidget(dismiss)
        self.hide()

    @Slot(str)
    def show_notice(self, text: str, offer_open: bool = False) -> None:
        """Show `text`, optionally with the "Open model…" button."""
        self._label.setText(text)
        self._open.setVisible(offer_open)
        self._plain.setVisible(False)
        self.show()

    @Slot(str)
    def offer_plain_transcript(self, text: str) -> None:
        """Show `text` (a chat template failed) with the "Use plain transcript" button."""
        self.show_notice(text)
        self._plain.setVisible(True)

    @Slot()
    def _on_plain(self) -> None:
        self._plain.setVisible(False)
        self.plainTranscriptRequested.emit()

    @Slot()
    def clear(self) -> None:
        """Hide the bar."""
        self.hide()
        self._label.clear()

    @property
    def text(self) -> str:
        """The notice on show ("" when none)."""
        return self._label.text() if not self.isHidden() else ""
