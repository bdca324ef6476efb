"""Python logging to a rotating file, with llama.cpp's own log routed into it."""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import threading
from collections import deque
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
    """Log to `log_dir/hearth.log` (rotating, 3 x 2 MiB) and return the file's path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE_NAME
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2 * 1024 * 1024, backupCount=3, encoding="utf-8"
        )
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    return path


def current_log_file() -> Path | None:
    """The file the root logger writes to (set up by `setup_logging`), if any."""
    for handler in logging.getLogger().handlers:
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


def route_llama_log() -> LlamaLogRouter:
    """Install the llama.cpp log router once per process and return it."""
    global _router
    if _router is None:
        _router = LlamaLogRouter()
        _router.install()
    return _router
