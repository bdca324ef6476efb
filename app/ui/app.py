"""Start the desktop app: paths, logging, the main window, the event loop, ordered exit."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from PySide6.QtCore import QMessageLogContext, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from app import __version__
from app.core.data_files import resource_file
from app.core.errors import HearthError
from app.core.logs import current_log_file, setup_logging
from app.core.machine.gui_readiness import GuiReadiness, check_gui
from app.core.models.library import resolve_model
from app.core.paths import AppPaths, app_paths
from app.ui.gui_gc import GuiThreadGarbageCollector
from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)

APP_NAME = "Hearth"
DESKTOP_FILE_NAME = "hearth"  # resources/hearth.desktop: Wayland and the taskbars match on it
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
_SIGNAL_POLL_MS = 250
qt_log = logging.getLogger("qt")

_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}
# Headless platform plugins (offscreen, minimal) cannot apply window size hints and say so
# on every window; nothing is wrong, so it is logged at debug level only.
_PLATFORM_NOISE = ("This plugin does not support propagateSizeHints()",)


def run_app(data_dir: str | None = None, model: str | None = None) -> int:
    """Run the GUI until its window closes; return the process exit status.

    A start that fails unexpectedly is logged, and the person is told where the log is
    (on stderr, and in a message box once Qt is up): see `report_startup_failure`.

    Args:
        data_dir: Keep all Hearth data here (else `HEARTH_HOME`, else per-OS folders).
        model: A .gguf path or a model name to open; None opens the starter model.
    """
    try:
        paths = app_paths(data_dir).ensure()
        log_path = setup_logging(paths.logs)
    except Exception as exc:  # no log folder: report_startup_failure writes a temporary one
        return report_startup_failure(exc)
    log.info("starting Hearth %s (log: %s)", __version__, log_path)
    with qt_messages_to_log():
        return _run(paths, model, log_path)


def app_icon() -> QIcon:
    """Hearth's icon in every rendered size (resources/icons/hearth-<size>.png)."""
    icon = QIcon()
    for size in ICON_SIZES:
        path = resource_file(f"icons/hearth-{size}.png")
        if path.is_file():
            icon.addFile(str(path))
    if icon.isNull():
        svg = resource_file("hearth.svg")
        if svg.is_file():
            icon = QIcon(str(svg))
    return icon


def configure_application(app: QApplication) -> None:
    """Name, version, desktop entry and icon: what the OS shows for the app."""
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("")
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    icon = app_icon()
    if icon.isNull():
        log.warning("the app icon was not found in %s", resource_file("icons"))
    else:
        app.setWindowIcon(icon)


def report_startup_failure(exc: BaseException, log_file: Path | None = None) -> int:
    """Log an unexpected failure to start and tell the person where the details are.

    Prints `hearth: could not start: ... Details: <log>` to stderr and shows the same in a
    message box when a QApplication exists (a windowed app has no visible stderr). With
    no log file (`log_file`, else the root logger's), the traceback goes to a file in the
    temporary folder. Returns the exit status, 1.
    """
    log_file = log_file or current_log_file()
    if log_file is not None:
        log.critical("Hearth could not start", exc_info=exc)
    else:
        log_file = _write_crash_file(exc)
    summary = str(exc) or type(exc).__name__
    message = f"Hearth could not start: {summary}\n\nDetails: {log_file}"
    print(f"hearth: could not start: {summary}. Details: {log_file}", file=sys.stderr)
    if isinstance(QApplication.instance(), QApplication):
        with _suppress_all():
            QMessageBox.critical(None, APP_NAME, message)
    return 1


def _write_crash_file(exc: BaseException) -> Path:
    """With no log file yet (the log folder itself failed), keep the traceback in /tmp."""
    path = Path(tempfile.gettempdir()) / f"hearth-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with _suppress_all():
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


@contextmanager
def _suppress_all() -> Iterator[None]:
    """Reporting a failure must not fail in turn."""
    try:
        yield
    except Exception:
        log.exception("could not report a failed start")


def _run(paths: AppPaths, model: str | None, log_path: Path) -> int:
    window: MainWindow | None = None
    try:
        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
        collector = GuiThreadGarbageCollector(app)
        configure_application(app)
        try:
            window = MainWindow(paths)
        except HearthError as exc:  # e.g. a database that cannot be opened: say which and why
            log.error("cannot open the main window: %s", exc)
            print(f"hearth: error: {exc.message}", file=sys.stderr)
            QMessageBox.critical(None, APP_NAME, exc.message)
            return 1
        try:
            window.load_model(resolve_model(model, paths))
        except HearthError as exc:
            log.info("no model to open: %s", exc)
            if model is not None:  # with no model asked for, the welcome panel explains
                window.show_missing_model(exc.message)
        window.show()
        window.focus_composer()
    except Exception as exc:  # an unexpected failure to start: log it, show where
        if window is not None:
            with _suppress_all():
                window.shutdown()
        return report_startup_failure(exc, log_path)

    with _close_on_terminate(window):
        status = app.exec()

    if not window.shutdown():
        # A llama.cpp call ignored the cancel; exiting now beats Qt aborting on a live thread.
        log.critical("the inference thread did not stop; exiting without waiting for it")
        logging.shutdown()
        os._exit(status or 1)
    collector.uninstall()  # the worker threads have ended; collect here one last time
    log.info("the app exited with status %d", status)
    return int(status)


def platform_plugin_help(
    message: str, readiness: Callable[[], GuiReadiness] = check_gui
) -> list[str]:
    """When Qt says its platform plugin cannot load: the shared libraries it lacks and the
    commands that install them (Qt's own message names only libxcb-cursor0). Empty when the
    message is about something else or nothing is missing."""
    if "platform plugin" not in message:
        return []
    result = readiness()
    return [] if result.ready else result.lines()


@contextmanager
def qt_messages_to_log() -> Iterator[None]:
    """Send Qt's own messages to Hearth's log (logger `qt`) instead of stderr."""

    def handler(kind: QtMsgType, context: QMessageLogContext, message: str) -> None:
        level = (
            logging.DEBUG if message in _PLATFORM_NOISE else _QT_LEVELS.get(kind, logging.WARNING)
        )
        where = f" ({context.file}:{context.line})" if context.file else ""
        qt_log.log(level, "%s%s", message, where)
        if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
            # Qt may abort right after this; the person must see why, and where the log is.
            log_file = current_log_file()
            print(f"hearth: Qt error: {message}", file=sys.stderr)
            for line in platform_plugin_help(message):
                log.error("%s", line)
                print(f"hearth: {line}", file=sys.stderr)
            if log_file:
                print(f"hearth: details in the log: {log_file}", file=sys.stderr)

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)


@contextmanager
def _close_on_terminate(window: MainWindow) -> Iterator[None]:
    """Ctrl+C and SIGTERM close the window (an ordered exit) instead of killing the app.

    Python runs signal handlers only between bytecodes, so a timer wakes it up regularly
    while Qt's event loop waits.
    """

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        QTimer.singleShot(0, window.close)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    waker = QTimer()
    waker.setObjectName("signalWaker")
    waker.timeout.connect(_noop)
    waker.start(_SIGNAL_POLL_MS)
    try:
        yield
    finally:
        waker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _noop() -> None:
    """Gives Python a moment to run pending signal handlers."""
