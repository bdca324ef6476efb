"""The "About this machine" dialog: what llama.cpp was built with and sees, and whether it
can use the GPU (the same report as `hearth doctor`), read-only, with a Copy button."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.widgets import named as _named

GATHERING_TEXT = "Looking at this machine…"


class MachineReportDialog(QDialog):
    """Shows the machine report (`report_lines`) once it is ready; Copy puts it on the
    clipboard.

    Object names: machineReportDialog, machineReportView, copyMachineReportButton,
    closeMachineReportButton, machineReportStatusLabel.

    Signals:
        copied(str): The report was put on the clipboard.
    """

    copied = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "machineReportDialog", "About this machine")
        self.setWindowTitle("About this machine")
        self.resize(640, 460)
        intro = QLabel(
            "What llama.cpp was built with and what it sees on this computer. "
            "`hearth doctor` prints the same report in a terminal."
        )
        intro.setObjectName("machineReportIntro")
        intro.setWordWrap(True)
        self._view = QPlainTextEdit()
        _named(self._view, "machineReportView", "Machine report")
        self._view.setReadOnly(True)
        self._view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._view.setPlainText(GATHERING_TEXT)
        self._status = QLabel()
        _named(self._status, "machineReportStatusLabel", "Report status")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.setObjectName("machineReportButtons")
        self._copy = QPushButton("Copy")
        _named(self._copy, "copyMachineReportButton", "Copy the report")
        self._copy.setEnabled(False)
        self._copy.clicked.connect(self.copy_report)
        buttons.addButton(self._copy, QDialogButtonBox.ButtonRole.ActionRole)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        _named(close, "closeMachineReportButton", "Close")
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self._view, 1)
        layout.addWidget(self._status)
        layout.addWidget(buttons)
        self._ready = False

    @property
    def text(self) -> str:
        """The report on show ("" until it is ready)."""
        return self._view.toPlainText() if self._ready else ""

    @property
    def is_ready(self) -> bool:
        """Whether the report (or why there is none) is on show."""
        return self._ready

    def set_gathering(self) -> None:
        """Show that the report is being made."""
        self._ready = False
        self._view.setPlainText(GATHERING_TEXT)
        self._status.clear()
        self._copy.setEnabled(False)

    def set_report(self, lines: list[str]) -> None:
        """Show the report, one item a line."""
        self._ready = True
        self._view.setPlainText("\n".join(lines))
        self._status.clear()
        self._copy.setEnabled(True)

    def set_failed(self, message: str) -> None:
        """Say why there is no report."""
        self._ready = True
        self._view.setPlainText(message)
        self._status.clear()
        self._copy.setEnabled(True)

    @Slot()
    def copy_report(self) -> None:
        """Put the report on the clipboard."""
        text = self._view.toPlainText()
        QGuiApplication.clipboard().setText(text)
        self._status.setText("Copied to the clipboard.")
        self.copied.emit(text)
