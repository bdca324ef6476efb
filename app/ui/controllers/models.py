"""The model in use: loading (with progress, cancel and GPU fallback), the starter model,
per-model load options, the machine report and the model manager window."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.inference.gpu_fallback import OffloadOutcome, Placement
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.prompt import FALLBACK_NOTICE
from app.core.machine.doctor import diagnose, report_lines
from app.core.machine.hardware import MachineReport, machine_report
from app.core.models.starter import STARTER, install_starter, starter_path
from app.core.paths import AppPaths
from app.ui.controllers.state import ChatState
from app.workers.background import JobSet
from app.workers.inference_thread import InferenceThread

if TYPE_CHECKING:  # dialogs load when first opened, not with the window
    from app.ui.models.load_options_dialog import LoadOptionsDialog
    from app.ui.models.machine_dialog import MachineReportDialog
    from app.ui.models.model_manager import ModelManager

log = logging.getLogger(__name__)


def machine_report_lines() -> list[str]:
    """The "About this machine" text: the machine report and the verdict on GPU use (the
    same as `hearth doctor`). Runs `nvidia-smi` where there is one: call it off the GUI
    thread."""
    report = machine_report()
    return report_lines(report, diagnose(report))


@dataclass(frozen=True)
class LoadOptionsFacts:
    """What the load options dialog needs: the model's header and the machine."""

    path: Path
    info: GGUFInfo
    report: MachineReport


def load_options_facts(path: Path, info: GGUFInfo | None) -> LoadOptionsFacts:
    """Read the model's header (unless given) and the machine report; off the GUI thread."""
    return LoadOptionsFacts(
        path, info if info is not None else read_gguf_info(path), machine_report()
    )


class ModelController(QObject):
    """Loads models through the inference worker and keeps `state.model` current.

    Models load with their saved load options (`LoadOptionsStore`), else the window's
    `load_options`, else the defaults. A load that had to retry with fewer GPU layers, or
    ended on the CPU against the person's wish, is told in a notice: never silently.

    Signals:
        loadStarting(): A load is about to start (the window stops the reply streaming).
        loadingShown(str): A load of this file name started.
        loadProgress(float): Fraction loaded.
        loadingHidden(): No load is in progress any more.
        modelChanged(): `state.model` or `state.placement` changed (also to None).
        modelLoaded(object): A `LoadedModel` is ready.
        modelLoadEnded(): A load ended without a model (failed or cancelled).
        notice(str, bool): Text for the notice bar, and whether to offer "Open model…".
        noticeCleared(): The notice bar can be cleared (a load went well).
        status(str, int): A passing status-bar message and its timeout in ms.
        controlsChanged(): What can be done now changed.
        starterFetching(str): The starter model is being downloaded (text to show).
        starterFetchFailed(str): Why it could not be.
        starterFetched(): It is installed.
        remoteRequested(str, str): The person picked a server's model in the model manager
            (connection name, model).
    """

    loadStarting = Signal()
    loadingShown = Signal(str)
    loadProgress = Signal(float)
    loadingHidden = Signal()
    modelChanged = Signal()
    modelLoaded = Signal(object)
    modelLoadEnded = Signal()
    notice = Signal(str, bool)
    noticeCleared = Signal()
    status = Signal(str, int)
    controlsChanged = Signal()
    starterFetching = Signal(str)
    starterFetchFailed = Signal(str)
    starterFetched = Signal()
    remoteRequested = Signal(str, str)

    def __init__(
        self,
        state: ChatState,
        paths: AppPaths,
        inference: InferenceThread,
        options_store: LoadOptionsStore,
        load_options: LoadOptions | None,
        window: QWidget,
    ) -> None:
        super().__init__(window)
        self._state = state
        self._paths = paths
        self._inference = inference
        self._options_store = options_store
        self._load_options = load_options
        self._window = window
        self._jobs = JobSet(self)
        self._placement_note = ""
        self._outcome: OffloadOutcome | None = None
        self._load_notice = ""  # told once the model it concerns has loaded
        self._options_job = False
        self._options_dialog: LoadOptionsDialog | None = None
        self._options_path: Path | None = None
        self._machine_job = False
        self._machine_dialog: MachineReportDialog | None = None
        self._manager: ModelManager | None = None
        worker = inference.worker
        worker.loadProgress.connect(self.loadProgress)
        worker.loadWarning.connect(self._on_load_warning)
        worker.offloadOutcome.connect(self._on_offload_outcome)
        worker.loaded.connect(self._on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.loadCancelled.connect(self._on_load_cancelled)
        worker.unloaded.connect(self._on_unloaded)
        worker.engineStopped.connect(self._on_engine_stopped)

    # ----- read-only state -----

    @property
    def placement_note(self) -> str:
        """What was retried to place the model, or ""."""
        return self._placement_note

    @property
    def options_store(self) -> LoadOptionsStore:
        """The load options saved per model."""
        return self._options_store

    @property
    def load_options_dialog(self) -> LoadOptionsDialog | None:
        """The load options dialog on show, or None."""
        return self._options_dialog

    @property
    def machine_report_dialog(self) -> MachineReportDialog | None:
        """The "About this machine" dialog, once opened."""
        return self._machine_dialog

    @property
    def manager(self) -> ModelManager | None:
        """The model manager, once opened."""
        return self._manager

    # ----- loading -----

    @Slot()
    def open_model_dialog(self) -> None:
        """Ask for a .gguf file and load it."""
        models = self._paths.models
        start = models if models.is_dir() and any(models.iterdir()) else Path.home()
        path, _ = QFileDialog.getOpenFileName(
            self._window, "Open model", str(start), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.load_model(path)

    def load_options_for(self, path: Path | str) -> LoadOptions:
        """The options a model loads with: its saved ones, else the window's, else the
        defaults."""
        return self._options_store.options_for(path, self._load_options)

    def load_model(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Start loading a model (with `options`, else `load_options_for(path)`); the
        window stays responsive and shows progress."""
        if self._state.shut_down:
            return
        if options is None:
            options = self.load_options_for(path)
        self.loadStarting.emit()
        self._state.loads_pending += 1
        self._state.model_path = Path(path)
        self.loadingShown.emit(Path(path).name)
        self.controlsChanged.emit()
        self._inference.load(path, options)

    @Slot()
    def cancel_load(self) -> None:
        """Cancel the model load in progress."""
        self._inference.cancel_load()

    @Slot()
    def load_starter(self) -> None:
        """Load the installed starter model."""
        self.load_model(starter_path(self._paths.models))

    @Slot()
    def fetch_starter(self) -> None:
        """Download the starter model in the background, then load it."""
        if self._state.shut_down:
            return
        models = self._paths.models
        self.starterFetching.emit(
            f"Downloading {STARTER.filename} ({STARTER.size / 1e6:.0f} MB)… the window stays "
            "usable meanwhile."
        )
        job = self._jobs.start(lambda: install_starter(models), "hearth-fetch-starter")
        job.succeeded.connect(self._on_starter_fetched)
        job.failed.connect(self.starterFetchFailed)

    @Slot(object)
    def _on_starter_fetched(self, path: object) -> None:
        self.starterFetched.emit()
        if isinstance(path, Path) and self._state.model is None:
            self.load_model(path)

    def _load_ended(self) -> None:
        self._state.loads_pending = max(0, self._state.loads_pending - 1)
        if not self._state.loads_pending:
            self.loadingHidden.emit()
        self.controlsChanged.emit()

    @Slot(str)
    def _on_load_warning(self, text: str) -> None:
        self._load_notice = f"{self._load_notice}\n\n{text}" if self._load_notice else text

    @Slot(object)
    def _on_offload_outcome(self, outcome: object) -> None:
        if isinstance(outcome, OffloadOutcome):
            self._outcome = outcome  # the `loaded` signal that follows is its model

    @Slot(object)
    def _on_loaded(self, model: object) -> None:
        assert isinstance(model, LoadedModel)
        outcome, self._outcome = self._outcome, None
        if outcome is not None and outcome.loaded != model:
            outcome = None
        self._state.model = model
        self._state.placement = outcome.where if outcome is not None else Placement.of(model)
        self._placement_note = outcome.message if outcome is not None else ""
        self._load_ended()
        self._refresh_library()
        if not self._state.loads_pending:
            self.modelChanged.emit()
        notices = [self._load_notice] if self._load_notice else []
        self._load_notice = ""
        if outcome is not None and outcome.worth_telling:
            notices.append(outcome.message)  # never a silent fallback
        if model.template_is_fallback:
            notices.append(FALLBACK_NOTICE)
        if notices:
            self.notice.emit("\n\n".join(notices), False)
        else:
            self.noticeCleared.emit()
        self.controlsChanged.emit()
        self.modelLoaded.emit(model)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self._load_ended()
        self._refresh_library()
        if not self._state.loads_pending:
            self.modelChanged.emit()
        if self._load_notice:
            message, self._load_notice = f"{self._load_notice}\n\n{message}", ""
        self.notice.emit(message, True)
        self.modelLoadEnded.emit()

    @Slot()
    def _on_load_cancelled(self) -> None:
        self._load_notice = ""
        self._load_ended()
        if not self._state.loads_pending:
            self.modelChanged.emit()
            self.status.emit("Loading cancelled.", 5000)
        self.modelLoadEnded.emit()

    @Slot(str)
    def _on_engine_stopped(self, message: str) -> None:
        self.notice.emit(message, True)

    @Slot()
    def _on_unloaded(self) -> None:
        self._state.model = None
        self._state.placement = None
        self._placement_note = ""
        if not self._state.loads_pending:
            self.modelChanged.emit()
        self.controlsChanged.emit()

    @Slot()
    def forget_local(self) -> None:
        """A server's model replaced the local one (the worker freed it)."""
        self._state.model = None
        self._state.placement = None
        self._state.model_path = None
        self._placement_note = ""
        self.modelChanged.emit()
        self.controlsChanged.emit()

    # ----- the model manager -----

    def _refresh_library(self) -> None:
        """A load ended: the load probe may have stored a verdict on the file (it loads, it
        crashed), so the library's "Fits" column is read again."""
        if self._manager is not None:
            self._manager.library.refresh()

    @Slot()
    def open_model_manager(self) -> ModelManager:
        """Show the model manager (your models, the Hub, downloads, quantizing)."""
        if self._manager is None:
            # Imported here: the Hub client is not needed (nor its import time paid) until then.
            from app.ui.models.model_manager import ModelManager

            manager = ModelManager(self._paths, parent=self._window)
            manager.loadRequested.connect(self._on_manager_load)
            manager.remoteRequested.connect(self.remoteRequested)
            self._manager = manager
        manager = self._manager
        if manager.isVisible():
            manager.raise_()
        else:
            manager.show()
        return manager

    @Slot(object)
    def _on_manager_load(self, path: object) -> None:
        if isinstance(path, Path):
            self.load_model(path)
            self._window.activateWindow()

    # ----- load options and the machine report -----

    @Slot()
    def open_load_options(self) -> None:
        """Show the load options of the model in use (or the one last opened)."""
        path = self._state.model_path
        if path is None or self._state.shut_down:
            self.status.emit("Open a model first (File → Open model…).", 5000)
            return
        if self._options_dialog is not None:
            self._options_dialog.raise_()
            self._options_dialog.activateWindow()
            return
        if self._options_job:
            return  # the dialog opens when its facts are in
        model = self._state.model
        info = model.info if model is not None and model.info.path == path else None
        job = self._jobs.start(functools.partial(load_options_facts, path, info), "hearth-options")
        job.succeeded.connect(self._on_load_options_facts)
        job.failed.connect(self._on_load_options_failed)
        self._options_job = True

    @Slot(object)
    def _on_load_options_facts(self, facts: object) -> None:
        self._options_job = False
        if self._state.shut_down or not isinstance(facts, LoadOptionsFacts):
            return
        from app.ui.models.load_options_dialog import LoadOptionsDialog

        dialog = LoadOptionsDialog(
            facts.info, self.load_options_for(facts.path), facts.report, self._window
        )
        dialog.accepted.connect(self._on_load_options_accepted)
        dialog.finished.connect(self._on_load_options_closed)
        self._options_dialog = dialog
        self._options_path = facts.path
        dialog.open()

    @Slot(str)
    def _on_load_options_failed(self, message: str) -> None:
        self._options_job = False
        if not self._state.shut_down:
            self.notice.emit(message, False)

    @Slot()
    def _on_load_options_accepted(self) -> None:
        dialog, path = self._options_dialog, self._options_path
        if dialog is None or path is None or self._state.shut_down:
            return
        options = dialog.options()
        if options is None:
            return
        try:
            self._options_store.set(path, options)
        except OSError as exc:
            self._load_notice = (
                f"Could not save the load options in {self._options_store.path}: "
                f"{exc.strerror or exc}. The model loaded with them this time only."
            )
        else:
            self.status.emit(f"Saved the load options of {path.name}.", 5000)
        self.load_model(path, options)

    @Slot(int)
    def _on_load_options_closed(self, _result: int) -> None:
        dialog = self._options_dialog
        self._options_dialog = None
        self._options_path = None
        if dialog is not None:
            dialog.deleteLater()

    @Slot()
    def open_machine_report(self) -> MachineReportDialog | None:
        """Show "About this machine": the report is made off the GUI thread."""
        if self._state.shut_down:
            return None
        if self._machine_dialog is None:
            from app.ui.models.machine_dialog import MachineReportDialog

            self._machine_dialog = MachineReportDialog(self._window)
            self._machine_dialog.copied.connect(self._on_copied)
        dialog = self._machine_dialog
        if dialog.isVisible():
            dialog.raise_()
        else:
            dialog.show()
        if self._machine_job:
            return dialog
        dialog.set_gathering()
        job = self._jobs.start(machine_report_lines, "hearth-machine-report")
        job.succeeded.connect(self._on_machine_report)
        job.failed.connect(self._on_machine_report_failed)
        self._machine_job = True
        return dialog

    @Slot(str)
    def _on_copied(self, _text: str) -> None:
        self.status.emit("Copied to the clipboard.", 2000)

    @Slot(object)
    def _on_machine_report(self, lines: object) -> None:
        self._machine_job = False
        if self._machine_dialog is not None and isinstance(lines, list):
            self._machine_dialog.set_report([str(line) for line in lines])

    @Slot(str)
    def _on_machine_report_failed(self, message: str) -> None:
        self._machine_job = False
        if self._machine_dialog is not None:
            self._machine_dialog.set_failed(message)

    # ----- shutdown -----

    def shutdown(self, timeout_ms: int) -> None:
        """Close the dialogs and the manager, wait for this controller's jobs."""
        if self._manager is not None:
            self._manager.shutdown(timeout_ms)
        for dialog in (self._options_dialog, self._machine_dialog, self._manager):
            if dialog is not None:
                dialog.close()
        self._jobs.wait(timeout_ms)
