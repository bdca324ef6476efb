"""A model on a saved server as the chat's model: Model → Connections…, connecting to a
server's model, and what the window shows while one is in use.

Every step that may touch the network or the OS keychain (listing, saving, testing,
reading a key) runs on a `BackgroundJob`; nothing does at start-up. Connecting itself is
the inference worker's (`InferenceThread.use_remote`): it answers `remoteConnected` with
the backend, whose `capabilities` decide what the window offers: sliders the server does
not take are disabled with the reason, the explorer says the distribution is not
available from this server.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QWidget

from app.core.inference.connections import (
    PRIVACY_NOTE,
    Connection,
    ConnectionStore,
    check_endpoint,
    endpoint_from_form,
    save_from_form,
)
from app.core.inference.remote_http import Endpoint
from app.core.inference.remote_server import ServerFacts
from app.ui.controllers.state import ChatState, RemoteInUse
from app.ui.sampling.explorer_panel import ExplorerPanel
from app.ui.sampling.sampling_panel import SamplingPanel
from app.workers.background import JobSet
from app.workers.inference_thread import InferenceThread

if TYPE_CHECKING:  # the dialog loads when first opened
    from app.ui.models.connections_dialog import ConnectionsDialog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Saved:
    """The connections list and where keys are kept (a job's result)."""

    connections: tuple[Connection, ...]
    key_storage: str
    select: str = ""


def unsupported_reason(remote: RemoteInUse) -> str:
    """The tooltip of a setting the server does not take."""
    return (
        f"Not available from this server: {remote.connection} (a {remote.kind} server) does "
        "not take this setting, so Hearth does not send it."
    )


def server_facts(remote: RemoteInUse) -> dict[str, str]:
    """The model panel's rows for a server's model."""
    return {
        "Model": remote.model,
        "File": f"on {remote.connection}: {remote.base_url}",
        "Quantization": "as the server runs it",
        "Size": "on the server",
        "Context": f"{remote.n_ctx:,} tokens",
        "Backend": f"{remote.kind} server · {remote.connection}",
    }


class RemoteController(QObject):
    """Connections, and a server's model as the chat's model (`state.remote`).

    `store` is made on first use (it may open the OS keychain), off the GUI thread.

    Signals:
        notice(str, bool): Text for the notice bar (never "Open model…").
        status(str, int): A passing status-bar message and its timeout in ms.
        remoteInUse(): A server's model replaced the local model (the worker freed it).
        changed(): `state.remote` was set or cleared: redraw the model, controls, counts.
    """

    notice = Signal(str, bool)
    status = Signal(str, int)
    remoteInUse = Signal()
    changed = Signal()

    def __init__(
        self,
        state: ChatState,
        config_dir: Path,
        inference: InferenceThread,
        panel: SamplingPanel,
        explorer: ExplorerPanel,
        window: QWidget,
        store: ConnectionStore | None = None,
    ) -> None:
        super().__init__(window)
        self._state = state
        self._config_dir = config_dir
        self._inference = inference
        self._panel = panel
        self._explorer = explorer
        self._window = window
        self._store_made = store
        self._store_lock = threading.Lock()
        self._jobs = JobSet(self)
        self._dialog: ConnectionsDialog | None = None
        self._connecting = ""
        worker = inference.worker
        worker.remoteConnected.connect(self._on_connected)
        worker.remoteFailed.connect(self._on_failed)
        worker.loaded.connect(self.forget)
        worker.unloaded.connect(self.forget)

    def _store(self) -> ConnectionStore:
        """The connection store (made here, on a job's thread, the first time)."""
        with self._store_lock:
            if self._store_made is None:
                self._store_made = ConnectionStore(self._config_dir)
            return self._store_made

    @property
    def dialog(self) -> ConnectionsDialog | None:
        """Model → Connections…, once opened."""
        return self._dialog

    # ----- Model → Connections… -----

    @Slot()
    def open_connections(self) -> ConnectionsDialog:
        """Show the connections dialog (its list is read off the GUI thread)."""
        if self._dialog is None:
            from app.ui.models.connections_dialog import ConnectionsDialog

            dialog = ConnectionsDialog(self._window)
            dialog.saveRequested.connect(self._save)
            dialog.testRequested.connect(self._test)
            dialog.removeRequested.connect(self._remove)
            dialog.useRequested.connect(self.use_model)
            self._dialog = dialog
        dialog = self._dialog
        if dialog.isVisible():
            dialog.raise_()
        else:
            dialog.show()
        self._refresh()
        return dialog

    def _refresh(self, select: str = "") -> None:
        def read() -> _Saved:
            store = self._store()
            return _Saved(tuple(store.all()), store.key_storage, select)

        job = self._jobs.start(read, "hearth-connections")
        job.succeeded.connect(self._on_saved_list)
        job.failed.connect(self._on_dialog_failed)

    @Slot(object)
    def _on_saved_list(self, saved: object) -> None:
        if self._dialog is None or not isinstance(saved, _Saved):
            return
        self._dialog.set_connections(saved.connections, saved.key_storage)
        if saved.select:
            self._dialog.select(saved.select)

    @Slot(str)
    def _on_dialog_failed(self, message: str) -> None:
        if self._dialog is not None:
            self._dialog.show_error(message)

    @Slot(str, str, str, str)
    def _save(self, name: str, url: str, key: str, ca: str) -> None:
        if self._dialog is not None:
            self._dialog.set_busy(f"Saving {name}…")

        def save() -> _Saved:
            store = self._store()
            saved = save_from_form(store, name, url, key, ca)
            return _Saved(tuple(store.all()), store.key_storage, saved.name)

        job = self._jobs.start(save, "hearth-connection-save")
        job.succeeded.connect(self._on_saved)
        job.failed.connect(self._on_dialog_failed)

    @Slot(object)
    def _on_saved(self, saved: object) -> None:
        self._on_saved_list(saved)
        if self._dialog is not None and isinstance(saved, _Saved):
            self._dialog.set_busy(f"Saved {saved.select}. {PRIVACY_NOTE}")

    @Slot(str, str, str, str)
    def _test(self, name: str, url: str, key: str, ca: str) -> None:
        if self._dialog is not None:
            self._dialog.set_busy(f"Asking {url} for its models…")

        def test() -> tuple[str, ServerFacts]:
            endpoint = endpoint_from_form(self._store(), name, url, key, ca)
            return name or endpoint.name, check_endpoint(endpoint)

        job = self._jobs.start(test, "hearth-connection-test")
        job.succeeded.connect(self._on_tested)
        job.failed.connect(self._on_dialog_failed)

    @Slot(object)
    def _on_tested(self, result: object) -> None:
        if self._dialog is None or not isinstance(result, tuple):
            return
        name, facts = result
        if isinstance(facts, ServerFacts):
            self._dialog.show_facts(str(name), facts)

    @Slot(str)
    def _remove(self, name: str) -> None:
        def remove() -> _Saved:
            store = self._store()
            store.remove(name)
            return _Saved(tuple(store.all()), store.key_storage)

        job = self._jobs.start(remove, "hearth-connection-remove")
        job.succeeded.connect(self._on_removed)
        job.failed.connect(self._on_dialog_failed)

    @Slot(object)
    def _on_removed(self, saved: object) -> None:
        if self._dialog is not None:
            self._dialog.clear_form()
        self._on_saved_list(saved)

    # ----- connecting -----

    @Slot(str, str)
    def use_model(self, name: str, model: str) -> None:
        """Make `model` on the saved connection `name` the chat's model."""
        if self._state.shut_down:
            return
        self._connecting = f"{model} @ {name}"
        self.status.emit(f"Connecting to {self._connecting}…", 0)
        job = self._jobs.start(lambda: self._store().endpoint(name), "hearth-connection-key")
        job.succeeded.connect(functools.partial(self._connect_endpoint, model))
        job.failed.connect(self._on_failed)

    def _connect_endpoint(self, model: str, endpoint: object) -> None:
        if isinstance(endpoint, Endpoint) and not self._state.shut_down:
            self._inference.use_remote(endpoint, model)

    @Slot(object)
    def _on_connected(self, backend: object) -> None:
        endpoint = getattr(backend, "endpoint", None)
        if not isinstance(endpoint, Endpoint) or self._state.shut_down:
            return
        capabilities = backend.capabilities  # type: ignore[attr-defined]
        remote = RemoteInUse(
            connection=endpoint.name,
            model=str(backend.model),  # type: ignore[attr-defined]
            base_url=endpoint.base_url,
            kind=str(getattr(backend, "kind", "")),
            n_ctx=int(backend.n_ctx),  # type: ignore[attr-defined]
            capabilities=capabilities,
        )
        self._connecting = ""
        self._state.remote = remote
        self.remoteInUse.emit()
        self._panel.set_server_model(server_facts(remote))
        self._panel.set_unsupported(capabilities.samplers, unsupported_reason(remote))
        if not capabilities.full_distribution:
            self._explorer.set_message(
                "The live explorer needs the model's full next-token distribution, which is "
                f"not available from this server ({remote.connection})."
            )
        missing = capabilities.missing()
        said = f" Not available from this server: {', '.join(missing)}." if missing else ""
        self.status.emit(f"Chatting with {remote.title}.{said} {PRIVACY_NOTE}", 15_000)
        self.changed.emit()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._connecting:
            self.status.emit("", 0)
        self._connecting = ""
        if not self._state.shut_down:
            self.notice.emit(message, False)

    @Slot()
    @Slot(object)
    def forget(self, _model: object = None) -> None:
        """The server's model is no longer in use (a local model loads or loaded)."""
        if self._state.remote is None:
            return
        self._state.remote = None
        self._panel.set_unsupported(None, "")
        self.changed.emit()

    # ----- shutdown -----

    def shutdown(self, timeout_ms: int) -> None:
        """Close the dialog and wait for this controller's jobs."""
        if self._dialog is not None:
            self._dialog.close()
        self._jobs.wait(timeout_ms)
