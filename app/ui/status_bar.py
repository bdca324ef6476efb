"""The status bar's permanent parts: the model, its load progress, where it runs, memory."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from app.core.inference.gpu_fallback import Placement
from app.core.inference.load_options import LoadedModel
from app.core.units import format_bytes
from app.ui.widgets import named

MEMORY_POLL_MS = 2000


def process_memory() -> tuple[int, bool] | None:
    """(bytes, is_current): this process's resident memory, or its peak where that is all
    the system tells; None where neither is known."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE"), True
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), False


def model_title(model: LoadedModel) -> str:
    """ "SmolLM2-135M-Instruct.Q4_1 · context 4,096 tokens" (the quant once)."""
    info = model.info
    name = info.path.stem if info.quant in info.path.stem else f"{info.path.stem} · {info.quant}"
    return f"{name} · context {model.n_ctx:,} tokens"


class StatusWidgets(QObject):
    """Adds and drives the permanent widgets of a window's status bar.

    Object names: modelStatusLabel, loadProgressBar, cancelLoadButton, backendLabel (where
    the model runs: "CPU · 2 threads", "GPU 33/33", "GPU 16/33 + CPU"), memoryLabel,
    memoryTimer.

    Signals:
        cancelLoadRequested(): The person pressed Cancel beside the load progress.
    """

    cancelLoadRequested = Signal()

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self._model = QLabel("No model loaded")
        named(self._model, "modelStatusLabel", "Model status")
        self._progress = QProgressBar()
        named(self._progress, "loadProgressBar", "Model loading progress")
        self._progress.setRange(0, 100)
        self._progress.setMaximumWidth(160)
        self._progress.hide()
        self._cancel = QPushButton("Cancel")
        named(self._cancel, "cancelLoadButton", "Cancel loading the model")
        self._cancel.clicked.connect(self.cancelLoadRequested)
        self._cancel.hide()
        self._backend = QLabel("")
        named(self._backend, "backendLabel", "Backend")
        self._server = QLabel("")
        named(self._server, "serverLabel", "Local API server")
        self._server.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._server.hide()
        self._memory = QLabel("")
        named(self._memory, "memoryLabel", "Memory in use")
        bar.setObjectName("statusBar")
        parts = (self._model, self._progress, self._cancel, self._backend, self._server)
        for widget in (*parts, self._memory):
            bar.addPermanentWidget(widget)
        self._timer = QTimer(self)
        self._timer.setObjectName("memoryTimer")
        self._timer.setInterval(MEMORY_POLL_MS)
        self._timer.timeout.connect(self._show_memory)
        self._timer.start()
        self._show_memory()

    def show_loading(self, name: str) -> None:
        """A load of `name` started: progress from 0 and a Cancel button."""
        self._model.setText(f"Loading {name}…")
        self._progress.setValue(0)
        self._progress.show()
        self._cancel.show()

    @Slot(float)
    def set_progress(self, fraction: float) -> None:
        """Fraction of the model loaded."""
        self._progress.setValue(round(fraction * 100))

    def hide_loading(self) -> None:
        """No load in progress any more."""
        self._progress.hide()
        self._cancel.hide()

    def show_model(self, model: LoadedModel | None, placement: Placement | None, note: str) -> None:
        """The model in use (None: no model) and where it runs, with `note` as tooltip."""
        if model is None:
            self._model.setText("No model loaded")
            self._model.setToolTip("")
            self._backend.setText("")
            self._backend.setToolTip("")
            return
        where = placement or Placement.of(model)
        self._model.setText(model_title(model))
        self._model.setToolTip(str(model.info.path))
        self._backend.setText(where.text)
        self._backend.setToolTip(note or "Where the model runs")

    def show_remote(self, title: str, where: str, tooltip: str) -> None:
        """A server's model in use: "model @ connection" and where it runs."""
        self._model.setText(title)
        self._model.setToolTip(tooltip)
        self._backend.setText(where)
        self._backend.setToolTip(
            "Replies come from this server: chats sent to it leave this machine"
        )

    def show_server(self, url: str | None, requests: int) -> None:
        """The API server's URL and requests answered (None: it is off)."""
        self._server.setVisible(url is not None)
        if url is not None:
            noun = "request" if requests == 1 else "requests"
            self._server.setText(f"API: {url} · {requests} {noun}")
            self._server.setToolTip(
                "Other programs on this computer can use the model through this "
                "OpenAI-compatible address (Model → Serve to other programs turns it off)."
            )

    def stop(self) -> None:
        """Stop polling (at shutdown)."""
        self._timer.stop()

    @Slot()
    def _show_memory(self) -> None:
        memory = process_memory()
        if memory is None:
            self._memory.hide()
            return
        used, current = memory
        label = "Memory" if current else "Peak memory"
        self._memory.setText(f"{label}: {format_bytes(used)}")
        self._memory.setToolTip("Memory this process uses (resident set)")
