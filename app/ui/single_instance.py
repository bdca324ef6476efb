"""One app per data folder: a second launch brings the first window forward and exits.

Two windows on one database would fight over it (the second marks the first's streaming
reply as interrupted). The first instance holds a `QLockFile` in the data folder, which
Qt itself declares stale when its process has died, and listens on a `QLocalServer`
named from a hash of the folder. A later launch that cannot take the lock connects to
that server, asks it to raise its window, and exits. A socket left behind by a crashed
instance is removed before listening.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "hearth.lock"
_RAISE = b"raise\n"
_CONNECT_MS = 1000
_SOCKET_OPTIONS = QLocalServer.SocketOption.UserAccessOption


def server_name(data_folder: Path) -> str:
    """The local socket name for a data folder (the same for every path spelling of it)."""
    try:
        real = data_folder.resolve()
    except (OSError, RuntimeError):
        real = data_folder.absolute()
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "")
    digest = hashlib.sha256(f"{user}\0{real}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"hearth-{digest[:24]}"


class SingleInstance(QObject):
    """Claims a data folder for this process, or hands the launch to the app that has it.

    Signals:
        activationRequested(): Another launch asked this instance to show its window.
    """

    activationRequested = Signal()

    def __init__(self, data_folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(data_folder)
        self._lock = QLockFile(str(data_folder / LOCK_FILE_NAME))
        self._lock.setStaleLockTime(0)  # only a dead owner makes it stale, never its age
        self._server: QLocalServer | None = None
        self._window: QWidget | None = None
        self.unresponsive = False  # set by `claim`: locked by an app that does not answer
        self.lock_path = data_folder / LOCK_FILE_NAME

    def claim(self) -> bool:
        """True if this process is now the data folder's app; False if another one is
        (it was asked to bring its window forward)."""
        if not self._lock.tryLock(0):
            if self._ask_running_to_raise():
                return False
            # Locked, yet nobody answers: the owner is starting up or hung. Do not start a
            # second app on the same database.
            log.warning("the data folder is locked by a process that does not answer")
            self.unresponsive = True
            return False
        QLocalServer.removeServer(self.name)  # a socket left by a crashed instance
        server = QLocalServer(self)
        server.setSocketOptions(_SOCKET_OPTIONS)
        if not server.listen(self.name):
            log.warning("cannot listen on %s: %s", self.name, server.errorString())
            return True  # still the only app on this folder (the lock says so)
        server.newConnection.connect(self._on_connection)
        self._server = server
        return True

    def show_window_on_request(self, window: QWidget) -> None:
        """Bring `window` forward whenever another launch asks."""
        self._window = window
        self.activationRequested.connect(self._raise_window)

    def release(self) -> None:
        """Stop listening and free the lock (at exit)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    @property
    def is_primary(self) -> bool:
        """True when this process holds the data folder."""
        return self._lock.isLocked()

    def _ask_running_to_raise(self) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(_CONNECT_MS):
            return False
        socket.write(_RAISE)
        socket.waitForBytesWritten(_CONNECT_MS)
        socket.disconnectFromServer()
        return True

    @Slot()
    def _on_connection(self) -> None:
        server = self._server
        while server is not None and server.hasPendingConnections():
            socket = server.nextPendingConnection()
            socket.readyRead.connect(self._on_ready_read)
            socket.disconnected.connect(socket.deleteLater)
            if socket.bytesAvailable():
                self._read(socket)

    @Slot()
    def _on_ready_read(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        data = bytes(socket.readAll().data())
        if _RAISE.strip() in data:
            log.info("another launch asked for the window")
            self.activationRequested.emit()

    @Slot()
    def _raise_window(self) -> None:
        window = self._window
        if window is None:
            return
        if window.isMinimized():
            window.showNormal()
        window.show()
        window.raise_()
        window.activateWindow()
