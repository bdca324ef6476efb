"""The local API server in the app: an OpenAI-compatible endpoint on the model the window
has loaded, switched on from the Model menu, shown in the status bar with its URL and the
requests it answered.

API replies run in a context of their own on the same weights (`Scheduler.sharing`), so the
chat's KV cache is untouched and both generate at once. The server stops before the model
is unloaded or replaced, and starts again on the new model if it was on.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QObject, Signal, Slot

from app.core.errors import HearthError
from app.core.server.app import ServerConfig
from app.core.server.handle import ServerHandle
from app.core.server.middleware import RequestRecord
from app.core.server.scheduler import Scheduler
from app.ui.controllers.state import ChatState
from app.ui.menus import Menus
from app.ui.status_bar import StatusWidgets
from app.workers.inference import InferenceThread

log = logging.getLogger(__name__)

PARALLEL = 2
"""API replies generated at once (each its own sequence, beside the chat's context)."""


class _Relay(QObject):
    """Carries the server thread's request count to the GUI thread (queued)."""

    served = Signal(int)


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
        self._scheduler: Scheduler | None = None
        self._handle: ServerHandle | None = None
        self._resume = False
        self._relay = _Relay(self)
        self._relay.served.connect(self._on_served)
        action.toggled.connect(self._on_toggled)
        inference.worker.loaded.connect(self.resume_after_load)
        inference.worker.unloaded.connect(self.on_unloaded)

    @property
    def url(self) -> str | None:
        """Where the API listens, or None when it is off."""
        return self._handle.url if self._handle is not None else None

    @property
    def requests(self) -> int:
        """Requests answered since it started."""
        return self._handle.requests if self._handle is not None else 0

    @Slot(bool)
    def _on_toggled(self, on: bool) -> None:
        if on and self._handle is None:
            self.start()
        elif not on and self._handle is not None:
            self.stop()

    def start(self) -> bool:
        """Serve the loaded model; False (with a notice) when it cannot."""
        engine = self._inference.worker.shared_engine()
        if engine is None or self._state.model is None:
            self.notice.emit("Load a model first: the API serves the model in use.", True)
            self._set_checked(False)
            return False
        scheduler = Scheduler.sharing(engine, parallel=PARALLEL)
        scheduler.start()
        try:
            handle, url = self._listen(scheduler, self._config)
        except HearthError as exc:
            scheduler.stop()
            self.notice.emit(exc.message, False)
            self._set_checked(False)
            return False
        self._scheduler, self._handle = scheduler, handle
        self._set_checked(True)
        self._widgets.show_server(url, 0)
        self.status.emit(f"Serving {self._state.model_name()} at {url}", 8000)
        return True

    def _listen(self, scheduler: Scheduler, config: ServerConfig) -> tuple[ServerHandle, str]:
        """Listen on the configured port, or on a free one if another program has it."""
        handle = ServerHandle(scheduler, config, on_request=self._record)
        try:
            return handle, handle.start()
        except HearthError:
            if config.port == 0:
                raise
            log.info("port %d is taken; serving on a free port", config.port)
            return self._listen(scheduler, replace(config, port=0))

    def stop(self) -> None:
        """Stop answering: cancel API replies, close the server, free its context."""
        handle, scheduler = self._handle, self._scheduler
        self._handle = self._scheduler = None
        if scheduler is not None:
            scheduler.cancel_all()
        if handle is not None:
            handle.stop()
        if scheduler is not None:
            scheduler.stop()
        self._set_checked(False)
        self._widgets.show_server(None, 0)

    @Slot()
    def pause_for_load(self) -> None:
        """A model is about to load: stop (the server must not outlive its model)."""
        if self._handle is not None:
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

    def _record(self, record: RequestRecord) -> None:  # on the server's thread
        handle = self._handle
        self._relay.served.emit(handle.requests if handle is not None else 0)
        log.debug("api %s %s %d", record.method, record.path, record.status)

    @Slot(int)
    def _on_served(self, count: int) -> None:
        if self._handle is not None:
            self._widgets.show_server(self._handle.url, count)

    def _set_checked(self, on: bool) -> None:
        if self._action.isChecked() != on:
            self._action.blockSignals(True)
            self._action.setChecked(on)
            self._action.blockSignals(False)
