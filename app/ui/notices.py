"""One way for code without a window to tell the person something: the notice bridge.

The app's exception hook (`app.ui.app.route_exceptions`) posts here when an event handler
fails; the main window connects `notice` to its notice bar. Emitting from any thread is
safe: the bridge lives on the GUI thread, so a receiver there gets the text queued.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

_bridge: NoticeBridge | None = None


class NoticeBridge(QObject):
    """Carries short, person-facing messages to whatever shows notices.

    Signals:
        notice(str): One line to show in the notice bar (it may name the log file).
    """

    notice = Signal(str)

    def post(self, text: str) -> None:
        """Send `text` to the notice bar (from any thread)."""
        self.notice.emit(text)


def notice_bridge() -> NoticeBridge:
    """The process's bridge, created on first use (call that first use on the GUI thread)."""
    global _bridge
    if _bridge is None:
        _bridge = NoticeBridge()
        _bridge.setObjectName("noticeBridge")
    return _bridge
