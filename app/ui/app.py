"""Start the desktop app: paths, logging, the main window, the event loop, ordered exit."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType

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
from app.core.storage import os_error_fault
from app.ui.gui_gc import GuiThreadGarbageCollector
from app.ui.main_window import MainWindow
from app.ui.notices import notice_bridge
from app.ui.single_instance import SingleInstance

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
    except OSError as exc:  # a read-only or full disk: say so, not just the errno
        return report_startup_failure(
            os_error_fault(exc, what="Hearth cannot create its folders there") or exc
        )
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


def paint_on_the_gui_thread() -> None:
    """Keep Qt's raster fills on the GUI thread (call before the QApplication exists).

    Qt hands every fill of 96 or more spans to a pool of helper threads and waits for
    them. While a reply streams that is most repaints, and the hand-off costs more than
    the fill: streaming into a lone chat view, it took the GUI thread from ~140 to ~95 µs
    of CPU per token and the pool's own ~50 µs away, CPU otherwise taken from llama.cpp's
    threads.
    """
    os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")


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
        paint_on_the_gui_thread()
        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
        collector = GuiThreadGarbageCollector(app)
        configure_application(app)
        instance = claim_data_folder(paths)
        if instance is None:
            return 0
        try:
            window = MainWindow(paths)
        except HearthError as exc:  # e.g. a database that cannot be opened: say which and why
            log.error("cannot open the main window: %s", exc)
            print(f"hearth: error: {exc.message}", file=sys.stderr)
            QMessageBox.critical(None, APP_NAME, exc.message)
            return 1
        collector.busy = window.is_streaming  # no full collection stalls a streaming reply
        # Start-up ends when the first model has loaded (or failed to, or there is none):
        # what is alive then stays alive, and collections stop walking it.
        window.modelLoaded.connect(collector.settle_soon)
        window.modelLoadEnded.connect(collector.settle_soon)
        window.show()
        window.focus_composer()
        instance.show_window_on_request(window)
        # The model loads once the window is up: its first frame does not wait for (or
        # share the CPU with) reading the model.
        QTimer.singleShot(0, partial(_open_first_model, window, paths, model, collector))
    except Exception as exc:  # an unexpected failure to start: log it, show where
        if window is not None:
            with _suppress_all():
                window.shutdown()
        return report_startup_failure(exc, log_path)

    with _close_on_terminate(window), route_exceptions():
        status = app.exec()

    if not window.shutdown():
        # A llama.cpp call ignored the cancel; exiting now beats Qt aborting on a live thread.
        log.critical("the inference thread did not stop; exiting without waiting for it")
        logging.shutdown()
        os._exit(status or 1)
    collector.uninstall()  # the worker threads have ended; collect here one last time
    instance.release()
    log.info("the app exited with status %d", status)
    return int(status)


def open_first_model(window: MainWindow, paths: AppPaths, model: str | None) -> None:
    """Load the model asked for (else the starter); say so if there is none."""
    try:
        window.load_model(resolve_model(model, paths))
    except HearthError as exc:
        log.info("no model to open: %s", exc)
        if model is not None:  # with no model asked for, the welcome panel explains
            window.show_missing_model(exc.message)
    window.focus_composer()


def _open_first_model(
    window: MainWindow, paths: AppPaths, model: str | None, collector: GuiThreadGarbageCollector
) -> None:
    """`open_first_model`; with no load begun, start-up ends here: settle `collector`."""
    open_first_model(window, paths, model)
    if not window.is_loading:
        collector.settle_soon()


def claim_data_folder(paths: AppPaths) -> SingleInstance | None:
    """Make this the one app on its data folder; None if another app has it (that app was
    asked to bring its window forward, and the person is told)."""
    instance = SingleInstance(paths.data)
    if instance.claim():
        return instance
    if instance.unresponsive:
        message = (
            f"Hearth is already running with the data folder {paths.data}, but it does not "
            f"answer. Close it (or end it), or delete {instance.lock_path} if no Hearth is "
            "running."
        )
    else:
        message = (
            f"Hearth is already running with the data folder {paths.data}; "
            "its window was brought forward."
        )
    log.info("%s", message)
    print(f"hearth: {message}", file=sys.stderr)
    return None


def report_unexpected_error(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Log an exception no handler caught, and tell the person in one line, with the log.

    Qt calls Python slots from its event loop, where an exception has no caller to go
    to: PySide prints it through `sys.excepthook`, which `route_exceptions` points here.
    The line goes to the notice bridge (the main window's notice bar) and to stderr.
    """
    log.error("unexpected error in an event handler", exc_info=(exc_type, exc, tb))
    where = current_log_file()
    if isinstance(exc, HearthError):
        text = exc.message
    else:
        summary = str(exc) or exc_type.__name__
        details = f" Details are in the log: {where}" if where else ""
        text = f"Something went wrong ({exc_type.__name__}: {summary}).{details}"
    with _suppress_all():
        notice_bridge().post(text)
    if sys.stderr is not None:
        with _suppress_all():
            print(f"hearth: error: {text}", file=sys.stderr)


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        report_unexpected_error(args.exc_type, args.exc_value, args.exc_traceback)


@contextmanager
def route_exceptions() -> Iterator[None]:
    """Send exceptions from event handlers and threads to the log and the notice bar.

    Without it they only reach stderr, which a windowed app does not show.
    """
    previous_hook, previous_thread_hook = sys.excepthook, threading.excepthook
    notice_bridge()  # created here, on the GUI thread

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous_hook(exc_type, exc, tb)
            return
        report_unexpected_error(exc_type, exc, tb)

    sys.excepthook = hook
    threading.excepthook = _thread_exception
    try:
        yield
    finally:
        sys.excepthook = previous_hook
        threading.excepthook = previous_thread_hook


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
