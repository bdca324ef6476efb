"""What a child process that runs llama.cpp needs: the C bindings imported lightly, its
stderr sent to a file, its threads named where the OS shows them, and, for the parent, what
killed it in words (llama.cpp's last line).

Only the standard library is imported at module level, so a child starts fast. Used by the
quantizer's child, the load probe and the engine host.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any

_PR_SET_NAME = 15  # prctl option, <linux/prctl.h>

SIGNAL_WORDS = {
    signal.SIGABRT: "an abort (a failed assertion in llama.cpp)",
    signal.SIGSEGV: "a segmentation fault",
    signal.SIGILL: "an illegal instruction",
    signal.SIGBUS: "a bus error",
    signal.SIGFPE: "an arithmetic fault",
}


def llama_capi() -> Any:
    """llama-cpp-python's C bindings (`llama_cpp.llama_cpp`), imported as lightly as possible.

    The package's `__init__` also imports the high-level `Llama` class with numpy and
    jinja2, about 0.15 s of start-up the quantizer does not need. The bindings module only
    needs the package as a namespace for its siblings, so the child registers a bare package
    module first; if that ever fails (another layout, a frozen bundle), the normal import is
    used.
    """
    try:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("llama_cpp is not a package here")
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["llama_cpp"] = package
        return importlib.import_module("llama_cpp.llama_cpp")
    except Exception:  # any failure: take the ordinary way
        for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
            del sys.modules[name]
        return importlib.import_module("llama_cpp").llama_cpp


def name_os_thread(name: str) -> None:
    """Name the calling thread where the OS shows thread names (Linux: `top -H`, perf,
    /proc), so a profile of the engine host tells its threads apart; 15 bytes at most.

    Python before 3.14 names only its own thread objects. Does nothing on other systems.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def redirect_stderr(path: str) -> None:
    """Send file descriptor 2 (C and Python writes alike) to `path`."""
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


def crash_reason(exitcode: int | None, problems: list[str], stderr_path: Path) -> str:
    """What killed the child, with llama.cpp's last words (an assert line if any)."""
    what = "it stopped"
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
            what = SIGNAL_WORDS.get(sig, sig.name)
        except ValueError:
            what = f"signal {-exitcode}"
    elif exitcode:
        what = f"exit status {exitcode}"
    said = last_line(stderr_path) or next(
        (line for line in reversed(problems) if line.strip(" .\t")), ""
    )
    if exitcode == -signal.SIGABRT and ("what():" in said or "terminate called" in said):
        what = "an error llama.cpp did not catch (a C++ exception)"
    return f"{what}: {said}" if said else what


def last_line(path: Path) -> str:
    """The line llama.cpp printed last that says what went wrong: an assert first, then an
    uncaught C++ exception, then any error; else its last line."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip(" .\t")]  # not progress dots
    for marks in (
        ("GGML_ASSERT", "GGML_ABORT"),
        ("what():", "terminate called"),
        ("error", "failed"),
    ):
        for line in reversed(lines):
            if any(mark in line.lower() for mark in map(str.lower, marks)):
                return short_line(line)
    return short_line(lines[-1]) if lines else ""


def short_line(line: str) -> str:
    """A log line without the build folder's long path before the source file's name."""
    if "/llama.cpp/" in line:
        line = line.split("/llama.cpp/", 1)[1]
    return line[:300]


def quiet_crashes() -> None:
    """A crash here is expected now and then: no core file, and no backtrace (ggml runs
    gdb for one on an abort, which takes seconds and writes to the terminal)."""
    os.environ["GGML_NO_BACKTRACE"] = "1"
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # not on this system: a core file may appear
        pass
