"""The Storage dialog: the space the database backups and the KV snapshots take, a Clear
button for each, and Repair database…. It shows what it is given and emits what the person
pressed; `StorageController` decides."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.units import format_bytes
from app.ui.widgets import named


def backups_text(count: int, size: int, folder: Path) -> str:
    """ "3 backups, 1.2 MB, in /data/backups" (or that there are none)."""
    if not count:
        return f"No backups yet (they are kept in {folder})."
    return f"{count} backup{'s' if count != 1 else ''}, {format_bytes(size)}, in {folder}"


def snapshots_text(used: int, budget: int) -> str:
    """ "12 MB of at most 2 GB, in memory" (the KV caches kept per chat)."""
    return f"{format_bytes(used)} of at most {format_bytes(budget)}, in memory"


class StorageDialog(QDialog):
    """Space used by the rolling database backups and the per-chat KV snapshots.

    Object names: storageDialog, backupsSizeLabel, clearBackupsButton,
    snapshotsSizeLabel, clearSnapshotsButton, repairDatabaseButton, storageResultLabel.

    Signals:
        clearBackupsRequested(): Clear (backups) was pressed.
        clearSnapshotsRequested(): Clear (KV snapshots) was pressed.
        repairRequested(): Repair database… was pressed.
    """

    clearBackupsRequested = Signal()
    clearSnapshotsRequested = Signal()
    repairRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "storageDialog", "Storage")
        self.setWindowTitle("Storage")
        self.setMinimumWidth(560)
        self._backups = QLabel()
        named(self._backups, "backupsSizeLabel", "Space used by database backups")
        self._snapshots = QLabel()
        named(self._snapshots, "snapshotsSizeLabel", "Space used by KV snapshots")
        for label in (self._backups, self._snapshots):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._clear_backups = QPushButton("Clear")
        named(self._clear_backups, "clearBackupsButton", "Delete the database backups")
        self._clear_backups.clicked.connect(self.clearBackupsRequested)
        self._clear_snapshots = QPushButton("Clear")
        named(self._clear_snapshots, "clearSnapshotsButton", "Drop the KV snapshots")
        self._clear_snapshots.clicked.connect(self.clearSnapshotsRequested)

        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        rows = (
            (
                "Database backups",
                "A copy of your chats taken at start-up once a day; the newest three are kept.",
                self._backups,
                self._clear_backups,
            ),
            (
                "KV snapshots",
                "The model's memory of each recent chat, so switching back is instant; "
                "sized from the free RAM.",
                self._snapshots,
                self._clear_snapshots,
            ),
        )
        for row, (title, hint, value, button) in enumerate(rows):
            heading = QLabel(f"<b>{title}</b>")
            heading.setToolTip(hint)
            explain = QLabel(hint)
            explain.setWordWrap(True)
            explain.setEnabled(False)  # drawn as secondary text
            grid.addWidget(heading, row * 2, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row * 2, 1)
            grid.addWidget(button, row * 2, 2, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(explain, row * 2 + 1, 1, 1, 2)

        self._result = QLabel()
        named(self._result, "storageResultLabel", "What was done")
        self._result.setWordWrap(True)
        repair = QPushButton("Repair database…")
        named(repair, "repairDatabaseButton", "Repair the chat database")
        repair.setToolTip(
            "Rebuild the chat database from every readable row; the damaged file is kept aside"
        )
        repair.clicked.connect(self.repairRequested)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.setObjectName("storageButtons")
        buttons.addButton(repair, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        named(close, "closeStorageButton", "Close")

        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self._result)
        layout.addStretch(1)
        layout.addWidget(buttons)

    def show_backups(self, count: int, size: int, folder: Path) -> None:
        """Show how many backups there are and their size; Clear only when there are some."""
        self._backups.setText(backups_text(count, size, folder))
        self._clear_backups.setEnabled(count > 0)

    @Slot(object, object)
    def show_snapshots(self, used: object, budget: object) -> None:
        """Show the bytes the KV snapshots take and their budget."""
        used_bytes, budget_bytes = int(used), int(budget)  # type: ignore[call-overload]
        self._snapshots.setText(snapshots_text(used_bytes, budget_bytes))
        self._clear_snapshots.setEnabled(used_bytes > 0)

    def show_result(self, text: str) -> None:
        """Say what the last button did ("Freed 1.2 MB.")."""
        self._result.setText(text)

    @property
    def result_text(self) -> str:
        """What the last button did ("" before any)."""
        return self._result.text()

    @property
    def backups_label(self) -> str:
        return self._backups.text()

    @property
    def snapshots_label(self) -> str:
        return self._snapshots.text()
