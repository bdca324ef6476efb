"""Python logging to a rotating file, with llama.cpp's own log routed into it."""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import os
import sys
import tempfile
import threading
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

LOG_FILE_NAME = "hearth.log"
llama_logger = logging.getLogger("llama.cpp")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5
_GGML_LEVELS = {
    0: logging.INFO,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
_GGML_CONT = 5


def setup_logging(log_dir: Path, level: int = logging.INFO) -> Path:
    """Log to `log_dir/hearth.log` (rotating, 3 x 2 MiB) and return the file's path.

    A log folder that cannot be written (read-only, or no permission) must not stop a
    command that only reads: the log then goes to a `hearth-logs` folder in the temporary
    folder. Writes that fail later (a full disk) are reported once on stderr, never as
    logging tracebacks, and retried with each new record.
    """
    path = log_dir / LOG_FILE_NAME
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        return _add_file_handler(path, level)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"hearth-logs-{_user_tag()}" / LOG_FILE_NAME
        fallback.parent.mkdir(parents=True, exist_ok=True)
        _add_file_handler(fallback, level)
        logging.getLogger(__name__).warning(
            "cannot write the log in %s (%s); logging to %s instead", log_dir, exc, fallback
        )
        return fallback


def _user_tag() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else "user"


def _add_file_handler(path: Path, level: int) -> Path:
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        handler = QuietFileHandler(path, maxBytes=2 * 1024 * 1024, backupCount=3, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    return path


class QuietFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that never floods stderr when it cannot write.

    The standard handler prints a traceback for every record it fails to write (a full
    disk gave `hearth chat` over a hundred). This one says so once, in one line, then
    drops records quietly, reopening the file with each new record so logging resumes
    when there is room again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 0

    def handleError(self, record: logging.LogRecord) -> None:
        """Count the failure, say it once, and close the stream so the next record retries."""
        self.failures += 1
        error = sys.exc_info()[1]
        stream, self.stream = self.stream, None
        if stream is not None:
            with suppress(Exception):
                stream.close()  # may fail again flushing what did not fit
        if self.failures == 1 and sys.stderr is not None:
            reason = getattr(error, "strerror", None) or error or "unknown error"
            with suppress(Exception):
                sys.stderr.write(
                    f"hearth: note: cannot write the log {self.baseFilename} ({reason}); "
                    "going on without it\n"
                )


def current_log_file() -> Path | None:
    """The file the root logger writes to: Hearth's own (`setup_logging`, the newest if it
    ran more than once in this process), else any."""
    handlers = logging.getLogger().handlers
    ours = [h for h in reversed(handlers) if isinstance(h, QuietFileHandler)]
    for handler in [*ours, *handlers]:
        name = getattr(handler, "baseFilename", None)
        if name:
            return Path(name)
    return None


class LlamaLogRouter:
    """Receives llama.cpp/ggml log lines and writes them to the `llama.cpp` logger.

    llama.cpp sends partial lines (and CONT pieces); they are joined per line. The last
    error and warning lines are kept so a failed load can quote what llama.cpp said.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._level = logging.INFO
        self._lock = threading.Lock()
        self.recent_problems: deque[str] = deque(maxlen=20)
        self._problem_count = 0
        self._callback: Any = None

    def install(self) -> None:
        """Become llama.cpp's log callback (process-wide)."""
        import llama_cpp

        self._callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        piece = (text or b"").decode("utf-8", errors="replace")
        with self._lock:
            if level != _GGML_CONT:
                self._level = _GGML_LEVELS.get(level, logging.INFO)
            self._buffer += piece
            if "\n" not in self._buffer:
                return
            *lines, self._buffer = self._buffer.split("\n")
            level_now = self._level
        for line in lines:
            if not line.strip():
                continue
            llama_logger.log(level_now, "%s", line)
            if level_now >= logging.ERROR:
                with self._lock:
                    self.recent_problems.append(line.strip())
                    self._problem_count += 1

    def mark(self) -> int:
        """A position to pass to `first_error_since` later."""
        with self._lock:
            return self._problem_count

    def first_error_since(self, mark: int) -> str | None:
        """The first error llama.cpp logged after `mark`, without its function-name prefix.

        The first error usually says what is wrong ("tensor 'x' not found"); the later
        ones only say that loading failed.
        """
        with self._lock:
            new = self._problem_count - mark
            if new <= 0:
                return None
            lines = list(self.recent_problems)[-min(new, len(self.recent_problems)) :]
        first = lines[0]
        return first.split(": ", 1)[1] if ": " in first else first


_router: LlamaLogRouter | None = None


def unexpected_error_message(exc: BaseException) -> str:
    """What to tell a person about an exception Hearth did not expect."""
    where = current_log_file()
    details = f"details in the log: {where}" if where else "details in the log"
    return f"Unexpected error: {type(exc).__name__}: {exc} ({details})"


def route_llama_log() -> LlamaLogRouter:
    """Install the llama.cpp log router once per process and return it."""
    global _router
    if _router is None:
        _router = LlamaLogRouter()
        _router.install()
    return _router
