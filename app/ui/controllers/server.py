"""The local API server in the app: an OpenAI-compatible endpoint on the model the window
has loaded, switched on from the Model menu, shown in the status bar with its URL and the
requests it answered.

The server runs in the engine host, beside the chat's engine: API replies run in a context
of their own on the same weights (`Scheduler.sharing`), so the chat's KV cache is untouched,
both generate at once, and a llama.cpp crash in an API reply ends the host, not the app.
Starting and stopping are asked of the host without waiting; its answers arrive as the
worker's `serving` / `serveFailed` / `served` / `serveStopped` signals. The host stops the
server before the model is unloaded or replaced; the window starts it again on the new
model if it was on.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot

from app.core.server.config import ServerConfig
from app.ui.controllers.state import ChatState
from app.ui.menus import Menus
from app.ui.status_bar import StatusWidgets
from app.workers.inference_thread import InferenceThread

log = logging.getLogger(__name__)

PARALLEL = 2
"""API replies generated at once (each its own sequence, beside the chat's context)."""


class ServerController(QObject):
    """Starts and stops the app's API server and keeps its menu action and status current.

    Signals:
        notice(str, bool): Text for the notice bar (and whether to offer "Open model…").
        status(str, int): A passing status-bar message and its timeout in ms.
    """

    notice = Signal(str, bool)
    status = Signal(str, int)

    def __init__(
        self,
        state: ChatState,
        inference: InferenceThread,
        menus: Menus,
        widgets: StatusWidgets,
        config: ServerConfig | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._state = state
        self._inference = inference
        self._action = action = menus.serve
        self._widgets = widgets
        self._config = config or ServerConfig()
        self._url: str | None = None
        self._requests = 0
        self._resume = False
        action.toggled.connect(self._on_toggled)
        worker = inference.worker
        worker.loaded.connect(self.resume_after_load)
        worker.unloaded.connect(self.on_unloaded)
        worker.serving.connect(self._on_serving)
        worker.serveFailed.connect(self._on_failed)
        worker.served.connect(self._on_served)
        worker.serveStopped.connect(self._on_stopped)

    @property
    def url(self) -> str | None:
        """Where the API listens, or None when it is off (or still starting)."""
        return self._url

    @property
    def requests(self) -> int:
        """Requests answered since it started."""
        return self._requests

    @Slot(bool)
    def _on_toggled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def start(self) -> bool:
        """Ask the host to serve the loaded model; False (with a notice) when none is."""
        if self._state.model is None:
            self.notice.emit("Load a model first: the API serves the model in use.", True)
            self._set_checked(False)
            return False
        self._set_checked(True)
        self._inference.serve(self._config, PARALLEL)
        return True

    def stop(self) -> None:
        """Stop answering: the host cancels API replies, closes the server, frees its
        context (`serveStopped` confirms)."""
        self._inference.unserve()
        self._url, self._requests = None, 0
        self._set_checked(False)
        self._widgets.show_server(None, 0)

    @Slot(str)
    def _on_serving(self, url: str) -> None:
        if not self._action.isChecked():  # switched off meanwhile
            self._inference.unserve()
            return
        self._url, self._requests = url, 0
        self._widgets.show_server(url, 0)
        self.status.emit(f"Serving {self._state.model_name()} at {url}", 8000)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._url = None
        self._set_checked(False)
        self._widgets.show_server(None, 0)
        self.notice.emit(message, self._state.model is None)

    @Slot(int)
    def _on_served(self, count: int) -> None:
        if self._url is not None:
            self._requests = count
            self._widgets.show_server(self._url, count)

    @Slot()
    def _on_stopped(self) -> None:
        if self._url is not None:  # stopped by the host (its model went away)
            self._url = None
            self._widgets.show_server(None, 0)

    @Slot()
    def pause_for_load(self) -> None:
        """A model is about to load: stop (the server must not outlive its model)."""
        if self._action.isChecked():
            self._resume = True
            self.stop()

    @Slot(object)
    def resume_after_load(self, _model: object = None) -> None:
        """The new model is loaded: serve it if the server was on."""
        if self._resume:
            self._resume = False
            self.start()

    @Slot()
    def on_unloaded(self) -> None:
        """The model is gone: so is the server."""
        self.stop()

    def _set_checked(self, on: bool) -> None:
        if self._action.isChecked() != on:
            self._action.blockSignals(True)
            self._action.setChecked(on)
            self._action.blockSignals(False)
