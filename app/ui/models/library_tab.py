"""The "My models" tab: every GGUF on this computer, what it is, whether it fits, and what
can be done with it (load, reveal, quantize, delete).

Scans and deletes run on background jobs; the list keeps showing the last scan meanwhile.
The details pane spells out the memory math: parameters x bits per weight = the weights,
plus the KV cache and buffers for the default context.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.connections import (
    PRIVACY_NOTE,
    ConnectionListing,
    ConnectionStore,
    list_connections,
)
from app.core.models.library import LibraryFolders, LibraryModel, delete_model, scan_library
from app.core.paths import AppPaths
from app.core.units import format_bytes, format_params
from app.ui.widgets import named
from app.workers.background import BackgroundJob, JobSet

log = logging.getLogger(__name__)

FIT_TEXT = {
    "fits": "Fits",
    "untried": "Not tried yet",
    "tight": "Tight",
    "too_big": "Too big",
    "unknown": "?",
}
FIT_TIPS = {
    "fits": "Fits in this machine's free memory with room to spare, and loads with this "
    "version of llama.cpp.",
    "untried": "Fits in this machine's free memory; Hearth has not loaded it with this version "
    "of llama.cpp yet (the first load tries it safely in a separate process).",
    "tight": "Just fits: close other programs, or use a smaller context.",
    "too_big": "Needs more memory than this machine has free.",
    "unknown": "The file's header could not be read, so its needs are unknown.",
}
SOURCE_TEXT = {
    "hearth": "Hearth",
    "starter": "Starter",
    "huggingface": "HF cache",
    "folder": "Your folder",
    "lmstudio": "LM Studio",
    "gpt4all": "GPT4All",
    "ollama": "Ollama",
}
COLUMNS = ("Name", "Quant", "Parameters", "Size", "Context", "Source", "Fits")
_MODEL_ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class RemoteRow:
    """A model a saved server lists, as a row of the library."""

    connection: str
    base_url: str
    model: str
    n_ctx: int | None
    kind: str

    def details_html(self) -> str:
        """The details pane's text for it."""
        esc = html.escape
        context = f"Context length: {self.n_ctx:,} tokens<br>" if self.n_ctx else ""
        return (
            f"<b>{esc(self.model)}</b><br>Served by the connection <b>{esc(self.connection)}</b> "
            f"({esc(self.kind)} server) at {esc(self.base_url)}<br>{context}"
            f"<span style='color:#9a6700'>{esc(PRIVACY_NOTE)}</span><br>"
            "Load makes it the chat's model. Add or change servers in Model → Connections…"
        )


def remote_rows(listings: list[ConnectionListing]) -> tuple[list[RemoteRow], list[str]]:
    """The rows of every listed server's models, and a line for each server that failed."""
    rows: list[RemoteRow] = []
    failures: list[str] = []
    for listing in listings:
        connection = listing.connection
        if listing.facts is None:
            failures.append(f"{connection.name}: {listing.error}")
            continue
        rows.extend(
            RemoteRow(connection.name, connection.base_url, m.id, m.n_ctx, listing.facts.kind)
            for m in listing.facts.models
        )
    return rows, failures


def bits_per_weight(size_bytes: int, n_params: int) -> float | None:
    """Average bits each parameter takes in the file (None when unknown)."""
    return size_bytes * 8 / n_params if n_params > 0 else None


def fit_text(model: LibraryModel) -> str:
    """The "Fits" column: broken, or the fit verdict, marked when a value looks wrong."""
    if model.problem:
        return "Broken"
    text = FIT_TEXT.get(model.fit, model.fit)
    return f"{text} ⚠" if model.warnings else text


def details_html(model: LibraryModel) -> str:
    """The details pane's text for one model."""
    esc = html.escape
    lines = [f"<b>{esc(model.name)}</b>"]
    if model.problem:
        lines.append(f"<span style='color:#c0392b'>{esc(model.problem)}</span>")
    lines.extend(
        f"<span style='color:#b9770e'>Warning: {esc(warning)}</span>" for warning in model.warnings
    )
    facts = [
        f"Architecture: {esc(model.architecture or 'unknown')}",
        f"Quantization: {esc(model.quant or 'unknown')}",
        f"Context length: {model.context_length:,} tokens" if model.context_length else "",
        "Chat template: yes"
        if model.has_chat_template
        else "Chat template: none (a plain transcript is used)",
    ]
    if model.is_projector:
        facts.append(
            "This is a vision projector (mmproj): it adds image input to a matching model "
            "and cannot chat on its own."
        )
    if model.repo_id:
        facts.append(f"From: {esc(model.repo_id)}")
    lines.extend(f for f in facts if f)
    bits = bits_per_weight(model.size_bytes, model.n_params)
    if bits is not None:
        lines.append(
            f"<b>Memory math:</b> {model.n_params:,} parameters &times; {bits:.2f} bits per weight "
            f"≈ {format_bytes(model.size_bytes)} of weights"
        )
    if model.memory_needed:
        lines.append(
            f"To run with a {min(4096, model.context_length or 4096):,}-token context: about "
            f"{format_bytes(model.memory_needed)} (weights + KV cache + buffers). "
            f"{FIT_TIPS.get(model.fit, '')}"
        )
    files = "<br>".join(esc(str(path)) for path in model.files)
    lines.append(f"<span style='color:gray'>{files}</span>")
    return "<br>".join(lines)


class LibraryTab(QWidget):
    """Lists the library and acts on the selected model.

    Object names: libraryFilter, libraryTree, libraryDetails, libraryStatusLabel,
    loadLibraryModelButton, revealModelButton, quantizeModelButton, deleteModelButton,
    addFolderButton, refreshLibraryButton.

    Models on saved servers (Model → Connections…) are listed too, labelled with their
    connection; they are asked for on each refresh (when the window opens), never sooner.

    Signals:
        loadRequested(object): Load this `Path`.
        remoteRequested(str, str): Use this model (connection name, model) of a server.
        quantizeRequested(object): Quantize this `LibraryModel`.
        scanned(int): A scan finished with this many models.
    """

    loadRequested = Signal(object)
    remoteRequested = Signal(str, str)
    quantizeRequested = Signal(object)
    scanned = Signal(int)

    def __init__(
        self, paths: AppPaths, *, include_other_apps: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._paths = paths
        self._include_other_apps = include_other_apps
        self._models: list[LibraryModel] = []
        self._jobs = JobSet(self)
        self._scan_job: BackgroundJob | None = None
        self._remote_job: BackgroundJob | None = None
        self._remote: list[RemoteRow] = []
        self._remote_failures: list[str] = []
        self._rescan = False

        self._filter = QLineEdit()
        named(self._filter, "libraryFilter", "Filter models")
        self._filter.setPlaceholderText("Filter by name, quant or source")
        self._filter.setClearButtonEnabled(True)
        self._filter.textChanged.connect(self._apply_filter)
        add_folder = QPushButton("Add folder…")
        named(add_folder, "addFolderButton", "Add a folder of models")
        add_folder.setToolTip("Also list the .gguf files in a folder of yours (nothing is copied)")
        add_folder.clicked.connect(self.add_folder_dialog)
        refresh = QPushButton("Refresh")
        named(refresh, "refreshLibraryButton", "Look for models again")
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self._filter, 1)
        top.addWidget(add_folder)
        top.addWidget(refresh)

        self._tree = QTreeWidget()
        named(self._tree, "libraryTree", "Models on this computer")
        self._tree.setHeaderLabels(list(COLUMNS))
        self._tree.setRootIsDecorated(False)
        self._tree.setSortingEnabled(True)
        self._tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self._tree.setAlternatingRowColors(True)
        self._tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self._tree.header().setStretchLastSection(False)
        self._tree.itemSelectionChanged.connect(self._on_selection)
        self._tree.itemDoubleClicked.connect(lambda *_: self.load_selected())

        self._details = QLabel("Pick a model to see what it is and what it needs.")
        named(self._details, "libraryDetails", "Model details")
        self._details.setWordWrap(True)
        self._details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._details.setAlignment(Qt.AlignmentFlag.AlignTop)
        self._details.setMinimumWidth(240)

        self._load = QPushButton("Load")
        named(self._load, "loadLibraryModelButton", "Load this model")
        self._load.clicked.connect(self.load_selected)
        self._reveal = QPushButton("Show in folder")
        named(self._reveal, "revealModelButton", "Show the file in its folder")
        self._reveal.clicked.connect(self.reveal_selected)
        self._quantize = QPushButton("Quantize…")
        named(self._quantize, "quantizeModelButton", "Make a smaller copy")
        self._quantize.setToolTip("Make a smaller, quantized copy with llama.cpp's quantizer")
        self._quantize.clicked.connect(self._on_quantize)
        self._delete = QPushButton("Delete…")
        named(self._delete, "deleteModelButton", "Delete this model")
        self._delete.clicked.connect(self.delete_selected)
        actions = QHBoxLayout()
        for button in (self._load, self._reveal, self._quantize, self._delete):
            actions.addWidget(button)
        actions.addStretch(1)

        side = QWidget()
        side_box = QVBoxLayout(side)
        side_box.setContentsMargins(0, 0, 0, 0)
        side_box.addWidget(self._details, 1)
        splitter = QSplitter()
        splitter.addWidget(self._tree)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        self._status = QLabel()
        named(self._status, "libraryStatusLabel", "Library status")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(actions)
        layout.addWidget(self._status)
        self._update_buttons()

    # ----- reading -----

    @property
    def models(self) -> list[LibraryModel]:
        """The models of the last scan."""
        return list(self._models)

    @property
    def is_scanning(self) -> bool:
        """A scan is running."""
        return self._scan_job is not None

    @property
    def remote_models(self) -> list[RemoteRow]:
        """The servers' models of the last listing."""
        return list(self._remote)

    def selected_remote(self) -> RemoteRow | None:
        """The selected server's model, if one is selected."""
        items = self._tree.selectedItems()
        row = items[0].data(0, _MODEL_ROLE) if items else None
        return row if isinstance(row, RemoteRow) else None

    def select_remote(self, connection: str, model: str) -> bool:
        """Select a server's model; False if it is not listed."""
        for item in self._items():
            row = item.data(0, _MODEL_ROLE)
            if isinstance(row, RemoteRow) and (row.connection, row.model) == (connection, model):
                self._tree.setCurrentItem(item)
                return True
        return False

    def selected(self) -> LibraryModel | None:
        """The selected model, if any."""
        items = self._tree.selectedItems()
        if not items:
            return None
        model = items[0].data(0, _MODEL_ROLE)
        return model if isinstance(model, LibraryModel) else None

    def select_path(self, path: Path) -> bool:
        """Select the model whose file is `path`; False if it is not listed."""
        wanted = Path(path).resolve()
        for item in self._items():
            model = item.data(0, _MODEL_ROLE)
            if isinstance(model, LibraryModel) and model.path.resolve() == wanted:
                self._tree.setCurrentItem(item)
                return True
        return False

    def _items(self) -> list[QTreeWidgetItem]:
        items = (self._tree.topLevelItem(i) for i in range(self._tree.topLevelItemCount()))
        return [item for item in items if item is not None]

    # ----- scanning -----

    @Slot()
    def refresh(self) -> None:
        """Scan for models again (in the background)."""
        if self._scan_job is not None:
            self._rescan = True
            return
        self._status.setText("Looking for models…")
        paths, others = self._paths, self._include_other_apps
        job = self._start(
            lambda: scan_library(paths, include_other_apps=others), "hearth-library-scan"
        )
        job.succeeded.connect(self._on_scanned)
        job.failed.connect(self._on_scan_failed)
        self._scan_job = job
        self._list_servers()

    def _list_servers(self) -> None:
        """Ask each saved server for its models (in the background)."""
        if self._remote_job is not None:
            return
        config = self._paths.config
        job = self._start(
            lambda: remote_rows(list_connections(ConnectionStore(config))), "hearth-library-servers"
        )
        job.succeeded.connect(self._on_servers_listed)
        job.failed.connect(self._on_servers_failed)
        self._remote_job = job

    @property
    def is_listing_servers(self) -> bool:
        """The saved servers are being asked for their models."""
        return self._remote_job is not None

    @Slot(object)
    def _on_servers_listed(self, result: object) -> None:
        self._remote_job = None
        if isinstance(result, tuple):
            self._remote, self._remote_failures = result
        self._fill()
        self._show_status()

    @Slot(str)
    def _on_servers_failed(self, message: str) -> None:
        self._remote_job = None
        self._remote, self._remote_failures = [], [message]
        self._fill()
        self._show_status()

    @Slot(object)
    def _on_scanned(self, models: object) -> None:
        self._scan_job = None
        selected = self.selected()
        self._models = (
            [m for m in models if isinstance(m, LibraryModel)] if isinstance(models, list) else []
        )
        self._fill()
        if selected is not None:
            self.select_path(selected.path)
        self._show_status()
        self.scanned.emit(len(self._models))
        if self._rescan:
            self._rescan = False
            self.refresh()

    def _show_status(self) -> None:
        usable = sum(1 for m in self._models if not m.problem and not m.is_projector)
        total = sum(m.size_bytes for m in self._models)
        lines = [
            f"{len(self._models)} model file{'s' if len(self._models) != 1 else ''} "
            f"({usable} ready to chat), {format_bytes(total)} in all."
        ]
        if self._remote:
            servers = len({r.connection for r in self._remote})
            lines[0] += f" {len(self._remote)} on {servers} server{'s' if servers != 1 else ''}."
        lines.extend(self._remote_failures)
        self._status.setText("\n".join(lines))

    @Slot(str)
    def _on_scan_failed(self, message: str) -> None:
        self._scan_job = None
        self._status.setText(f"Could not look for models: {message}")

    def _fill(self) -> None:
        self._tree.setSortingEnabled(False)
        self._tree.clear()
        for model in self._models:
            item = _SortableItem(
                [
                    model.name,
                    model.quant,
                    format_params(model.n_params),
                    format_bytes(model.size_bytes),
                    f"{model.context_length:,}" if model.context_length else "",
                    SOURCE_TEXT.get(model.source, model.source),
                    fit_text(model),
                ]
            )
            item.setData(0, _MODEL_ROLE, model)
            item.setData(2, _SortableItem.KEY, model.n_params)
            item.setData(3, _SortableItem.KEY, model.size_bytes)
            item.setData(4, _SortableItem.KEY, model.context_length)
            item.setToolTip(0, str(model.path))
            tip = model.problem or "\n".join(model.warnings) or FIT_TIPS.get(model.fit, "")
            item.setToolTip(6, tip)
            if model.is_projector:
                item.setText(1, f"{model.quant} · projector")
            self._tree.addTopLevelItem(item)
        for row in self._remote:
            context = f"{row.n_ctx:,}" if row.n_ctx else ""
            source = f"{row.connection} (server)"
            item = _SortableItem([row.model, "", "", "", context, source, "On the server"])
            item.setData(0, _MODEL_ROLE, row)
            item.setData(4, _SortableItem.KEY, row.n_ctx or 0)
            item.setToolTip(0, f"{row.model} on {row.connection}: {row.base_url}")
            item.setToolTip(5, f"Served by the connection {row.connection}; {PRIVACY_NOTE}")
            self._tree.addTopLevelItem(item)
        self._tree.setSortingEnabled(True)
        for column in range(1, len(COLUMNS)):
            self._tree.resizeColumnToContents(column)
        self._apply_filter(self._filter.text())
        self._update_buttons()

    @Slot(str)
    def _apply_filter(self, text: str) -> None:
        wanted = text.strip().lower()
        for item in self._items():
            haystack = " ".join(item.text(c) for c in range(len(COLUMNS))).lower()
            item.setHidden(bool(wanted) and wanted not in haystack)

    # ----- actions -----

    @Slot()
    def load_selected(self) -> None:
        """Load the selected model in the chat window (a server's: use it)."""
        row = self.selected_remote()
        if row is not None:
            self.remoteRequested.emit(row.connection, row.model)
            return
        model = self.selected()
        if model is not None and not model.problem and not model.is_projector:
            self.loadRequested.emit(model.path)

    @Slot()
    def reveal_selected(self) -> None:
        """Open the selected model's folder in the file manager."""
        model = self.selected()
        if model is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(model.path.parent)))

    @Slot()
    def _on_quantize(self) -> None:
        model = self.selected()
        if model is not None:
            self.quantizeRequested.emit(model)

    @Slot()
    def delete_selected(self, *, confirm: bool = True) -> None:
        """Delete the selected model's files, after asking (only what Hearth downloaded or
        made can be deleted)."""
        model = self.selected()
        if model is None or not model.deletable:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Delete model",
                f"Delete {model.name} ({format_bytes(model.size_bytes)})? "
                f"{len(model.files)} file{'s' if len(model.files) != 1 else ''} will be "
                "removed from this computer.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        paths = self._paths
        self._status.setText(f"Deleting {model.name}…")
        job = self._start(lambda: delete_model(paths, model), "hearth-library-delete")
        job.succeeded.connect(lambda _r: self.refresh())
        job.failed.connect(self._on_action_failed)

    @Slot()
    def add_folder_dialog(self) -> None:
        """Ask for a folder of models and add it to the library."""
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models", str(Path.home()))
        if folder:
            self.add_folder(Path(folder))

    def add_folder(self, folder: Path) -> None:
        """Add a folder to the library and scan again."""
        folders = LibraryFolders(self._paths.config)
        job = self._start(lambda: folders.add(folder), "hearth-library-add-folder")
        job.succeeded.connect(lambda _r: self.refresh())
        job.failed.connect(self._on_action_failed)

    @Slot(str)
    def _on_action_failed(self, message: str) -> None:
        self._status.setText(message)
        QMessageBox.warning(self, "Models", message)

    @Slot()
    def _on_selection(self) -> None:
        model, row = self.selected(), self.selected_remote()
        if row is not None:
            self._details.setText(row.details_html())
        elif model is None:
            self._details.setText("Pick a model to see what it is and what it needs.")
        else:
            self._details.setText(details_html(model))
        self._update_buttons()

    def _update_buttons(self) -> None:
        model = self.selected()
        chat_ready = model is not None and not model.problem and not model.is_projector
        self._load.setEnabled(chat_ready or self.selected_remote() is not None)
        self._reveal.setEnabled(model is not None)
        self._quantize.setEnabled(chat_ready)
        self._delete.setEnabled(model is not None and model.deletable)
        self._delete.setToolTip(
            "Delete the files Hearth downloaded or made"
            if model is None or model.deletable
            else "Only models Hearth downloaded or made can be deleted here"
        )

    # ----- jobs -----

    def _start(self, function: Callable[[], object], name: str) -> BackgroundJob:
        return self._jobs.start(function, name)

    def wait_for_jobs(self, timeout_ms: int) -> bool:
        """Wait for running scans and deletes (at shutdown)."""
        return self._jobs.wait(timeout_ms)


class _SortableItem(QTreeWidgetItem):
    """Sorts numeric columns by their number, not their text."""

    KEY = Qt.ItemDataRole.UserRole + 1

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        tree = self.treeWidget()
        column = tree.sortColumn() if tree is not None else 0
        mine, theirs = self.data(column, self.KEY), other.data(column, self.KEY)
        if isinstance(mine, int) and isinstance(theirs, int):
            return mine < theirs
        return self.text(column).lower() < other.text(column).lower()
