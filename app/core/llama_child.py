"""What a child process that runs llama.cpp needs: the C bindings imported lightly, and
its stderr sent to a file the parent can quote after a crash.

Only the standard library is imported at module level, so a child starts fast. Used by the
quantizer's child and the load probe's child.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any


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


def redirect_stderr(path: str) -> None:
    """Send file descriptor 2 (C and Python writes alike) to `path`."""
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
