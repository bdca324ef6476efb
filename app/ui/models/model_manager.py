"""The model manager window: My models, Discover (the Hub) and Downloads, plus the
Quantize dialog. Everything slow runs on background jobs; the window only shows it."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QCloseEvent, QHideEvent
from PySide6.QtWidgets import QDialog, QTabWidget, QVBoxLayout, QWidget

from app.core.models.hub import QuantOption, RepoFiles
from app.core.models.library import LibraryModel
from app.core.paths import AppPaths
from app.ui.models.downloads_tab import DownloadsTab, active_count
from app.ui.models.hub_tab import HubTab
from app.ui.models.library_tab import LibraryTab
from app.ui.models.quantize_dialog import QuantizeDialog
from app.ui.widgets import named
from app.ui.window_geometry import WindowGeometry
from app.workers.model_jobs import DownloadQueue

log = logging.getLogger(__name__)

LIBRARY_TAB, DISCOVER_TAB, DOWNLOADS_TAB = range(3)
GEOMETRY_FILE = "models-window.ini"
"""In the config dir: the model manager's geometry (the main window's is window.ini)."""


class ModelManager(QDialog):
    """Find, download, quantize and pick models.

    Object names: modelManager, modelManagerTabs; the tabs' own (see LibraryTab, HubTab,
    DownloadsTab) and quantizeDialog.

    `endpoint` and `token` default to huggingface_hub's own (HF_ENDPOINT, the stored
    token); `include_other_apps` lists the models of the HF cache, LM Studio, GPT4All and
    Ollama too. It opens where the person left it, or on a first start at a comfortable
    share of the screen (`window_geometry`).

    Signals:
        loadRequested(object): Load this model file (a `Path`) in the chat window.
        remoteRequested(str, str): Use a server's model (connection name, model).
        modelAdded(object): A download or quantization put this `Path` in the library.
    """

    loadRequested = Signal(object)
    remoteRequested = Signal(str, str)
    modelAdded = Signal(object)

    def __init__(
        self,
        paths: AppPaths,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        include_other_apps: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        named(self, "modelManager", "Models")
        self.setWindowTitle("Models")
        self._paths = paths
        self._geometry = WindowGeometry(paths.config / GEOMETRY_FILE)
        self._geometry.restore(self)
        self._quantize_dialog: QuantizeDialog | None = None

        self.queue = DownloadQueue(paths, self)
        self.library = LibraryTab(paths, include_other_apps=include_other_apps)
        self.hub = HubTab(endpoint=endpoint, token=token)
        self.downloads = DownloadsTab(self.queue)
        self._tabs = QTabWidget()
        self._tabs.setObjectName("modelManagerTabs")
        self._tabs.addTab(self.library, "My models")
        self._tabs.addTab(self.hub, "Discover")
        self._tabs.addTab(self.downloads, "Downloads")
        layout = QVBoxLayout(self)
        layout.addWidget(self._tabs)

        self.library.loadRequested.connect(self._on_load)
        self.library.remoteRequested.connect(self.remoteRequested)
        self.library.quantizeRequested.connect(self.open_quantize)
        self.hub.downloadRequested.connect(self.queue_download)
        self.queue.completed.connect(self._on_downloaded)
        self.queue.changed.connect(self._update_downloads_title)
        self.queue.restore()
        self.library.refresh()

    def show_tab(self, index: int) -> None:
        """Bring one tab to the front."""
        self._tabs.setCurrentIndex(index)

    @property
    def quantize_dialog(self) -> QuantizeDialog | None:
        """The open Quantize dialog, if any."""
        return self._quantize_dialog

    @Slot(object, object)
    def queue_download(self, repo: object, option: object) -> None:
        """Queue a file option of a Hub repo and show the Downloads tab."""
        if not isinstance(repo, RepoFiles) or not isinstance(option, QuantOption):
            return
        self.queue.add_option(repo, option, endpoint=self.hub.endpoint, token=self.hub.token)
        self.show_tab(DOWNLOADS_TAB)

    @Slot(object)
    def open_quantize(self, model: object) -> None:
        """Open the Quantize dialog for a library model."""
        if not isinstance(model, LibraryModel):
            return
        if self._quantize_dialog is not None:
            if self._quantize_dialog.is_running:
                self._quantize_dialog.raise_()
                return
            self._quantize_dialog.close()
            self._quantize_dialog.deleteLater()
        dialog = QuantizeDialog(self._paths, model, self)
        dialog.quantized.connect(self._on_quantized)
        dialog.loadRequested.connect(self._on_load)
        self._quantize_dialog = dialog
        dialog.show()

    @Slot(int, object)
    def _on_downloaded(self, _key: int, path: object) -> None:
        self.library.refresh()
        if isinstance(path, Path):
            self.modelAdded.emit(path)

    @Slot(object)
    def _on_quantized(self, result: object) -> None:
        self.library.refresh()
        output = getattr(result, "output", None)
        if isinstance(output, Path):
            self.modelAdded.emit(output)

    @Slot(object)
    def _on_load(self, path: object) -> None:
        if isinstance(path, Path):
            self.loadRequested.emit(path)

    @Slot(int)
    def _update_downloads_title(self, _key: int) -> None:
        active = active_count(self.queue.items())
        self._tabs.setTabText(DOWNLOADS_TAB, f"Downloads ({active})" if active else "Downloads")

    def hideEvent(self, event: QHideEvent) -> None:
        """Remember the geometry whenever the window goes away (closed, Escape, hidden)."""
        self._geometry.save(self)
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Remember the geometry, then close."""
        self._geometry.save(self)
        super().closeEvent(event)

    def shutdown(self, timeout_ms: int) -> bool:
        """Pause downloads (they resume next time), cancel a quantization, wait for jobs."""
        ok = self.queue.shutdown(timeout_ms)
        if self._quantize_dialog is not None:
            ok = self._quantize_dialog.shutdown(timeout_ms) and ok
        ok = self.library.wait_for_jobs(timeout_ms) and ok
        ok = self.hub.wait_for_jobs(timeout_ms) and ok
        return ok
