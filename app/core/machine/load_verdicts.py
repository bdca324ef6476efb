"""Whether a model file is known to load with this llama.cpp build: verdicts of the load
probe, kept per file (path, size, modification time) and build in one JSON file.

The library reads them to say "fits" only for files known to load, and to list files that
crashed a load with the reason; the inference side writes them after each probe.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

VERDICTS_FILE = "load-verdicts.json"
PROBE_CACHE_ENV = "HEARTH_PROBE_CACHE"
Status = Literal["ok", "crashed", "refused"]


@dataclass(frozen=True)
class LoadVerdict:
    """What happened when this build last tried the file in a child process.

    Attributes:
        status: "ok" (it loaded and read a prompt), "crashed" (the child died: abort,
            segfault, illegal instruction) or "refused" (llama.cpp returned an error).
        reason: For a person: llama.cpp's last error or assert line, or the signal.
        use_extra_bufts: Whether it loads with llama.cpp's extra buffer types (AMX and
            repacked weights); False when only the plain CPU path works on this machine.
        finite: False when the model's outputs held NaN or infinity (damaged weights).
    """

    status: Status
    reason: str = ""
    use_extra_bufts: bool = True
    finite: bool = True

    @property
    def loads(self) -> bool:
        """True when the file is known to load."""
        return self.status == "ok"


def nan_warning(path: Path) -> str:
    """The warning for a model whose outputs held NaN or infinity when it was tried."""
    return (
        f"{path.name} computes NaN or infinite values: its weights or settings look damaged, "
        "and replies will be nonsense. Re-download it."
    )


def verdict_problem(path: Path, verdict: LoadVerdict) -> str | None:
    """Why a file the probe tried cannot be used, for a person; None when it loaded."""
    if verdict.status == "crashed":
        return (
            f"{path.name} makes llama.cpp crash ({verdict.reason}), so Hearth did not load "
            "it. The file may be damaged or made for another llama.cpp: re-download it, or "
            "pick another quantization of this model."
        )
    if verdict.status == "refused":
        return (
            f"llama.cpp could not load {path.name} ({verdict.reason or 'no reason given'}): "
            "re-download it, or pick another quantization of this model."
        )
    return None


def probe_cache_dir(default: Path) -> Path:
    """Where verdicts are kept: `HEARTH_PROBE_CACHE` if set (tests share one), else
    `default` (the app's cache folder)."""
    override = os.environ.get(PROBE_CACHE_ENV)
    return Path(override) if override else default


def file_key(path: Path, build: str, gpu: bool) -> str:
    """The identity a verdict is kept under: the file's contents (cheaply) and the build."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{build}|{'gpu' if gpu else 'cpu'}"


class LoadVerdicts:
    """The verdicts file in a cache folder. Safe to share between threads of a process."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / VERDICTS_FILE
        self._lock = threading.Lock()

    def get(self, key: str) -> LoadVerdict | None:
        """The verdict kept under `key`, or None."""
        with self._lock:
            entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return LoadVerdict(**entry)
        except TypeError:
            return None

    def put(self, key: str, verdict: LoadVerdict) -> None:
        """Keep `verdict` under `key` (a file that cannot be written is logged, not raised:
        the probe then runs again next time)."""
        with self._lock:
            data = self._read()
            data[key] = asdict(verdict)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".verdicts-")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1)
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("could not save load verdicts in %s: %s", self.path, exc)

    def for_file(self, path: Path) -> LoadVerdict | None:
        """The newest verdict for this file as it is now (any build, CPU first)."""
        with self._lock:
            data = self._read()
        try:
            st = path.stat()
        except OSError:
            return None
        prefix = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|"
        for key in sorted(data, key=lambda k: k.endswith("|cpu"), reverse=True):
            entry = data[key]
            if key.startswith(prefix) and isinstance(entry, dict):
                try:
                    return LoadVerdict(**entry)
                except TypeError:
                    continue
        return None

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
