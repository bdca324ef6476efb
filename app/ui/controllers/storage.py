"""Storage: the space backups and KV snapshots take (cleared on request), and Repair
database…, which rebuilds the chat database off the GUI thread (`hearth repair`'s logic)
and reopens it."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QWidget

from app.core.chats import backups
from app.core.chats.store import Store
from app.core.errors import HearthError
from app.core.units import format_bytes
from app.ui.controllers.state import ChatState
from app.workers.background import BackgroundJob, JobSet
from app.workers.kv_snapshots import KVSnapshots

if TYPE_CHECKING:  # the dialog and the repair load when first used
    from app.ui.storage_dialog import StorageDialog

log = logging.getLogger(__name__)

REPAIR_QUESTION = (
    "Hearth will rebuild the chat database from every row it can read, keep the damaged "
    "file aside, and open the rebuilt one. Chats are unavailable for the few seconds it "
    "takes. Repair now?"
)


class StorageController(QObject):
    """The Storage dialog and Repair database….

    Object name: storageController (the window owns it).

    Signals:
        notice(str, bool): Text for the notice bar (the repair's report, a failure).
        status(str, int): A passing status-bar message and its timeout in ms.
        repairStarting(): The database is about to close for a repair: save what is pending.
        repaired(): The database was replaced and reopened: read everything again.
    """

    notice = Signal(str, bool)
    status = Signal(str, int)
    repairStarting = Signal()
    repaired = Signal()

    def __init__(
        self, state: ChatState, store: Store, snapshots: KVSnapshots, window: QWidget
    ) -> None:
        super().__init__(window)
        self.setObjectName("storageController")
        self._state = state
        self._store = store
        self._snapshots = snapshots
        self._window = window
        self._jobs = JobSet(self)
        self._dialog: StorageDialog | None = None
        self._repairing = False
        self._freeing_snapshots = 0
        snapshots.usageChanged.connect(self._on_snapshot_usage)

    @property
    def dialog(self) -> StorageDialog | None:
        """The Storage dialog, once opened."""
        return self._dialog

    @property
    def repairing(self) -> bool:
        """True while a repair runs (the database is closed meanwhile)."""
        return self._repairing

    # ----- the Storage dialog -----

    @Slot()
    def open_dialog(self) -> StorageDialog:
        """Show the Storage dialog with the sizes as they are now."""
        if self._dialog is None:
            from app.ui.storage_dialog import StorageDialog

            self._dialog = StorageDialog(self._window)
            self._dialog.clearBackupsRequested.connect(self.clear_backups)
            self._dialog.clearSnapshotsRequested.connect(self.clear_snapshots)
            self._dialog.repairRequested.connect(self.repair_dialog)
        self._dialog.show_result("")
        self._show_backups()
        self._dialog.show_snapshots(self._snapshots.used_bytes, self._snapshots.budget_bytes)
        self._dialog.show()
        self._dialog.activateWindow()
        return self._dialog

    def _show_backups(self) -> None:
        if self._dialog is None:
            return
        folder = backups.backup_folder(self._store.path)
        found = backups.list_backups(folder)
        self._dialog.show_backups(len(found), sum(b.size for b in found), folder)

    @Slot()
    def clear_backups(self) -> None:
        """Delete every database backup and say how much space that freed."""
        folder = backups.backup_folder(self._store.path)
        freed = backups.clear_backups(folder)
        left = backups.list_backups(folder)
        text = f"Deleted the database backups: freed {format_bytes(freed)}."
        if left:
            text += f" {len(left)} could not be deleted (see the log); check {folder}."
        self._say(text)
        self._show_backups()

    @Slot()
    def clear_snapshots(self) -> None:
        """Drop every KV snapshot; the freed size is said when the keeper confirms."""
        self._freeing_snapshots = self._snapshots.used_bytes
        self._snapshots.clear()

    @Slot(object, object)
    def _on_snapshot_usage(self, used: object, budget: object) -> None:
        if self._dialog is not None:
            self._dialog.show_snapshots(used, budget)
        if self._freeing_snapshots and used == 0:
            freed, self._freeing_snapshots = self._freeing_snapshots, 0
            self._say(f"Dropped the KV snapshots: freed {format_bytes(freed)} of memory.")

    def _say(self, text: str) -> None:
        if self._dialog is not None and self._dialog.isVisible():
            self._dialog.show_result(text)
        self.status.emit(text, 8000)

    # ----- repair -----

    @Slot()
    def repair_dialog(self) -> None:
        """Ask, then repair the database."""
        parent = self._dialog if self._dialog is not None and self._dialog.isVisible() else None
        answer = QMessageBox.question(
            parent or self._window,
            "Repair the chat database",
            REPAIR_QUESTION,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.repair()

    def repair(self) -> BackgroundJob | None:
        """Close the database, rebuild it from every readable row on a background job, keep
        the damaged file aside and reopen; `notice` reports what was recovered.

        Refused (a notice, None) while a reply is being written or a repair runs.
        """
        if self._repairing:
            return None
        if self._state.active is not None:
            self.notice.emit(
                "A reply is being written; stop it (Esc) before repairing the database.", False
            )
            return None
        self.repairStarting.emit()
        self._repairing = True
        self._store.close()
        self.status.emit(f"Repairing {self._store.path}…", 0)
        from app.core.chats.repair import repair_database

        repair = functools.partial(repair_database, self._store.path)
        job = self._jobs.start(repair, "hearth-repair")
        job.succeeded.connect(self._on_repaired)
        job.failed.connect(self._on_repair_failed)
        return job

    @Slot(object)
    def _on_repaired(self, report: object) -> None:
        if not self._reopen():
            return
        self.repaired.emit()
        from app.core.chats.repair import RepairReport

        if isinstance(report, RepairReport):
            self.notice.emit("\n".join(report.lines()), False)
        self._show_backups()

    @Slot(str)
    def _on_repair_failed(self, message: str) -> None:
        if self._reopen():
            self.repaired.emit()
            self.notice.emit(f"The database was not repaired: {message}", False)

    def _reopen(self) -> bool:
        self._repairing = False
        if self._state.shut_down:  # the window closed meanwhile: the store stays closed
            return False
        self.status.emit("", 0)
        try:
            self._store.reopen()
        except HearthError as exc:
            log.warning("the database could not be reopened after a repair: %s", exc)
            self.notice.emit(exc.message, False)
            return False
        return True

    def wait(self, timeout_ms: int) -> bool:
        """Wait for a repair in progress (at shutdown)."""
        return self._jobs.wait(timeout_ms)
