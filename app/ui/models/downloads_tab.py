"""The "Downloads" tab: the queue with progress, speed and time left, and pause, resume and
cancel for each item. Downloads the last session left unfinished show up paused."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.models.download_types import DownloadProgress
from app.core.units import format_bytes
from app.ui.widgets import named
from app.workers.model_jobs import DownloadItem, DownloadQueue

STATE_TEXT = {
    "queued": "Waiting",
    "running": "Downloading",
    "paused": "Paused",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def format_eta(seconds: float | None) -> str:
    """ "2 min 5 s left", "" when unknown."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600} h {whole % 3600 // 60} min left"
    if whole >= 60:
        return f"{whole // 60} min {whole % 60} s left"
    return f"{whole} s left"


def progress_text(progress: DownloadProgress) -> str:
    """ "41 MB of 98 MB · 12.3 MB/s · 5 s left" (or what the phase is)."""
    if progress.phase == "verifying":
        return "Checking the SHA-256 checksum…"
    if progress.phase == "checking":
        return "Checking free disk space and the server…"
    if progress.phase == "retrying":
        return (
            f"Connection lost at {format_bytes(progress.done_bytes)}; "
            f"retrying ({progress.retry}/{progress.retries})…"
        )
    parts = [f"{format_bytes(progress.done_bytes)} of {format_bytes(progress.total_bytes)}"]
    if progress.bytes_per_second > 0:
        parts.append(f"{format_bytes(int(progress.bytes_per_second))}/s")
    eta = format_eta(progress.eta_seconds)
    if eta:
        parts.append(eta)
    if progress.retry:
        parts.append(f"retry {progress.retry}/{progress.retries}")
    return " · ".join(parts)


class DownloadRow(QWidget):
    """One queue item: title, progress bar, status line, pause/resume and cancel."""

    def __init__(self, queue: DownloadQueue, key: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"downloadRow{key}")
        self._queue = queue
        self._key = key
        self.title = QLabel()
        self.title.setObjectName("downloadTitle")
        self.bar = QProgressBar()
        self.bar.setObjectName("downloadProgress")
        self.bar.setRange(0, 1000)
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pause_button = QPushButton("Pause")
        named(self.pause_button, "pauseDownloadButton", "Pause or resume this download")
        self.pause_button.clicked.connect(self._toggle)
        self.cancel_button = QPushButton("Cancel")
        named(self.cancel_button, "cancelDownloadButton", "Cancel this download")
        self.cancel_button.clicked.connect(lambda: self._queue.cancel(self._key))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.cancel_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(6, 4, 6, 4)
        box.addLayout(top)
        box.addWidget(self.bar)
        box.addWidget(self.status)
        self.refresh()

    def refresh(self) -> None:
        """Show the item's current state."""
        item = self._queue.item(self._key)
        self.title.setText(item.title)
        self._set_bar(item.done_bytes, item.total_bytes)
        state = STATE_TEXT.get(item.state, item.state)
        self.status.setText(f"{state}. {item.message}" if item.message else state)
        active = item.state in ("queued", "running")
        self.pause_button.setText("Pause" if active else "Resume")
        self.pause_button.setVisible(item.state not in ("done", "cancelled"))
        self.cancel_button.setVisible(item.state not in ("done", "cancelled"))

    def show_progress(self, progress: DownloadProgress) -> None:
        """Show a progress report of the running item."""
        self._set_bar(progress.done_bytes, progress.total_bytes)
        self.status.setText(progress_text(progress))

    def _set_bar(self, done: int, total: int) -> None:
        self.bar.setValue(int(1000 * done / total) if total > 0 else 0)
        self.bar.setFormat(f"{100 * done / total:.0f}%" if total > 0 else "")

    @Slot()
    def _toggle(self) -> None:
        item = self._queue.item(self._key)
        if item.state in ("queued", "running"):
            self._queue.pause(self._key)
        else:
            self._queue.resume(self._key)


class DownloadsTab(QWidget):
    """The download queue on show.

    Object names: downloadList, clearDownloadsButton, downloadsEmptyLabel.
    """

    def __init__(self, queue: DownloadQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._queue = queue
        self._rows: dict[int, tuple[QListWidgetItem, DownloadRow]] = {}
        self._list = QListWidget()
        named(self._list, "downloadList", "Downloads")
        self._empty = QLabel("No downloads. Find models in the Discover tab.")
        self._empty.setObjectName("downloadsEmptyLabel")
        clear = QPushButton("Clear finished")
        named(clear, "clearDownloadsButton", "Remove finished downloads from the list")
        clear.clicked.connect(queue.remove_finished)
        bottom = QHBoxLayout()
        bottom.addWidget(self._empty, 1)
        bottom.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.addWidget(self._list, 1)
        layout.addLayout(bottom)
        queue.changed.connect(self._on_changed)
        queue.progressed.connect(self._on_progress)
        for item in queue.items():
            self._on_changed(item.key)
        self._update_empty()

    def row(self, key: int) -> DownloadRow | None:
        """The row widget of an item (None if it is not listed)."""
        entry = self._rows.get(key)
        return entry[1] if entry else None

    @Slot(int)
    def _on_changed(self, key: int) -> None:
        exists = any(item.key == key for item in self._queue.items())
        entry = self._rows.get(key)
        if not exists:
            if entry is not None:
                self._list.takeItem(self._list.row(entry[0]))
                entry[1].deleteLater()
                del self._rows[key]
            self._update_empty()
            return
        if entry is None:
            list_item = QListWidgetItem()
            row = DownloadRow(self._queue, key)
            list_item.setSizeHint(row.sizeHint())
            self._list.addItem(list_item)
            self._list.setItemWidget(list_item, row)
            self._rows[key] = (list_item, row)
        else:
            entry[1].refresh()
        self._update_empty()

    @Slot(int, object)
    def _on_progress(self, key: int, progress: object) -> None:
        row = self.row(key)
        if row is not None and isinstance(progress, DownloadProgress):
            row.show_progress(progress)

    def _update_empty(self) -> None:
        self._empty.setVisible(not self._rows)


def active_count(items: list[DownloadItem]) -> int:
    """Items still to do (waiting, running or paused)."""
    return sum(1 for item in items if item.state in ("queued", "running", "paused"))
