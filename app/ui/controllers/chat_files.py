"""Chat files: import a Hearth JSON export, export chats as JSON or Markdown, both on a
background job so a large database never freezes the window."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from app.core.chats.conversation import DEFAULT_TITLE, Conversation
from app.core.chats.store import Store
from app.ui.controllers.state import ChatState
from app.workers.background import BackgroundJob, JobSet


def file_stem(title: str) -> str:
    """A file name stem from a chat title ("Name a bird" -> "Name-a-bird")."""
    keep = "".join(ch if ch.isalnum() or ch in " -_" else " " for ch in title)
    stem = "-".join(keep.split())[:60]
    return stem or DEFAULT_TITLE.replace(" ", "-").lower()


@dataclass(frozen=True)
class Exported:
    """Where an export went, and what it had to leave out (damaged rows)."""

    path: Path
    skipped: tuple[str, ...]


def _export(store: Store, path: Path, ids: list[int] | None, markdown: bool) -> Exported:
    from app.core.chats.export_import import export_json, export_markdown, write_text

    skipped: list[str] = []
    if markdown:
        text = export_markdown(store, ids, skipped=skipped)
    else:
        text = export_json(store, ids, skipped=skipped)
    write_text(path, text)
    return Exported(path, tuple(skipped))


class ChatFiles(QObject):
    """Import and export, asked for with file dialogs or called directly.

    Signals:
        imported(object): The tuple of `Conversation`s an import added (maybe empty).
        exported(object): The `Path` an export was written to.
        skipped(str): What an export left out because it could not be read (one notice).
        failed(str): Why an import or export did not happen (a message for a person).
        status(str, int): A passing status-bar message and its timeout in ms.
        savePending(): An export starts: streamed text and settings should be saved first.
    """

    imported = Signal(object)
    exported = Signal(object)
    skipped = Signal(str)
    failed = Signal(str)
    status = Signal(str, int)
    savePending = Signal()

    def __init__(self, state: ChatState, store: Store, window: QWidget) -> None:
        super().__init__(window)
        self._state = state
        self._store = store
        self._window = window
        self._jobs = JobSet(self)

    @Slot()
    def import_dialog(self) -> None:
        """Ask for a Hearth JSON export and add its chats."""
        path, _ = QFileDialog.getOpenFileName(
            self._window, "Import chats", str(Path.home()), "Hearth JSON (*.json);;All files (*)"
        )
        if path:
            self.import_chats(Path(path))

    def import_chats(self, path: Path) -> BackgroundJob:
        """Add the chats of a Hearth JSON file, off the GUI thread; `imported` tells."""
        from app.core.chats.export_import import import_file

        job = self._jobs.start(functools.partial(import_file, self._store, path), "hearth-import")
        job.succeeded.connect(self._on_imported)
        job.failed.connect(self.failed)
        return job

    @Slot(object)
    def _on_imported(self, conversations: object) -> None:
        imported = tuple(c for c in conversations if isinstance(c, Conversation))  # type: ignore[attr-defined]
        n = len(imported)
        self.status.emit(f"Imported {n} chat{'s' if n != 1 else ''}.", 5000)
        self.imported.emit(imported)

    @Slot()
    def export_chat_dialog(self) -> None:
        """Ask where to save the chat on show (JSON or Markdown)."""
        conversation = self._state.conversation
        if conversation is not None:
            self._export_dialog([conversation.id], file_stem(conversation.title))

    @Slot()
    def export_all_dialog(self) -> None:
        """Ask where to save every chat (JSON or Markdown)."""
        self._export_dialog(None, "hearth-chats")

    def _export_dialog(self, ids: list[int] | None, stem: str) -> None:
        path, chosen = QFileDialog.getSaveFileName(
            self._window,
            "Export chats",
            str(Path.home() / f"{stem}.json"),
            "Hearth JSON (*.json);;Markdown (*.md)",
        )
        if not path:
            return
        target = Path(path)
        markdown = target.suffix.lower() == ".md" or (not target.suffix and "*.md" in chosen)
        if not target.suffix:
            target = target.with_suffix(".md" if markdown else ".json")
        self.export_chats(target, ids, markdown=markdown)

    def export_chats(
        self, path: Path, ids: list[int] | None, *, markdown: bool = False
    ) -> BackgroundJob:
        """Write chats (None: all) to `path` as Hearth JSON or Markdown, off the GUI
        thread; `exported` or `failed` tells."""
        self.savePending.emit()
        job = self._jobs.start(
            functools.partial(_export, self._store, path, ids, markdown), "hearth-export"
        )
        job.succeeded.connect(self._on_exported)
        job.failed.connect(self.failed)
        return job

    @Slot(object)
    def _on_exported(self, result: object) -> None:
        if not isinstance(result, Exported):
            return
        self.status.emit(f"Exported to {result.path}.", 5000)
        if result.skipped:
            self.skipped.emit(
                f"Exported to {result.path}, but some of it could not be read and was left "
                "out: " + "; ".join(result.skipped)
            )
        self.exported.emit(result.path)

    def wait(self, timeout_ms: int) -> bool:
        """Wait for imports and exports in progress (at shutdown)."""
        return self._jobs.wait(timeout_ms)
