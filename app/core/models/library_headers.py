"""What the library knows of each GGUF without loading it: header facts read once and
cached by (path, size, modification time) in a JSON file, vision projectors recognised."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.core.errors import HearthError, ModelFileError, UnsupportedModelError
from app.core.gguf_file import GGUFInfo
from app.core.machine.memory import estimate_memory

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096
"""The context the fit verdict assumes (or the model's own, when smaller)."""
HEADER_CACHE_VERSION = 2  # 2: warnings, and values that crash llama.cpp are problems
PROJECTOR_MARK = "mmproj"
PROJECTOR_ARCH = "clip"

HeaderReader = Callable[[Path], GGUFInfo]
"""Reads a GGUF header (`read_gguf_info`); tests pass a counting one."""


def default_context(context_length: int) -> int:
    """The context the library judges a model at: min(4096, the model's own)."""
    return min(DEFAULT_CONTEXT, context_length) if context_length > 0 else DEFAULT_CONTEXT


@dataclass(frozen=True)
class HeaderFacts:
    """What the library keeps from one file's header (cached as JSON)."""

    name: str = ""  # general.name; "" when the header has none
    architecture: str = ""
    n_params: int = 0
    quant: str = ""
    tensor_bytes: int = 0
    context_length: int = 0
    has_chat_template: bool = False
    is_projector: bool = False
    memory_needed: int = 0  # this file alone at the default context
    problem: str | None = None
    unsupported: bool = False  # the problem is "well-formed but not runnable"
    warnings: tuple[str, ...] = ()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def named_projector(path: Path) -> bool:
    return PROJECTOR_MARK in path.name.lower()


def read_facts(path: Path, read_header: HeaderReader) -> HeaderFacts:
    """Read one header into facts; a bad file gives facts with `problem` set."""
    try:
        info = read_header(path)
    except UnsupportedModelError as exc:
        projector = projector_facts(path)
        if projector is not None:
            return projector
        return HeaderFacts(problem=str(exc), unsupported=True)
    except ModelFileError as exc:
        return HeaderFacts(problem=str(exc))
    except Exception as exc:  # a scan never stops for one file
        log.exception("reading the header of %s failed", path)
        return HeaderFacts(problem=f"'{path.name}' could not be read ({exc}).")
    try:
        memory = estimate_memory(info, default_context(info.context_length)).total
    except HearthError:
        memory = 0
    return HeaderFacts(
        name=info.name if info.name != path.stem else "",
        architecture=info.architecture,
        n_params=info.n_params,
        quant=info.quant,
        tensor_bytes=info.tensor_bytes,
        context_length=info.context_length,
        has_chat_template=bool(info.chat_template),
        is_projector=info.architecture == PROJECTOR_ARCH,
        memory_needed=memory,
        warnings=info.warnings,
    )


def projector_facts(path: Path) -> HeaderFacts | None:
    """Facts of a vision projector (which `read_gguf_info` refuses); None if it is not one."""
    from gguf import GGUFReader, LlamaFileType

    try:
        reader = GGUFReader(path, "r")
        values: dict[str, Any] = {}
        for key in ("general.architecture", "general.type", "general.name", "general.file_type"):
            found = reader.get_field(key)
            values[key] = found.contents() if found is not None else None
        n_params = sum(int(t.n_elements) for t in reader.tensors)
        tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
        del reader
    except Exception:  # not readable as a GGUF: not a projector we can describe
        return None
    if values["general.architecture"] != PROJECTOR_ARCH and values["general.type"] != "mmproj":
        return None
    quant = ""
    if isinstance(values["general.file_type"], int):
        try:
            quant = LlamaFileType(values["general.file_type"]).name
        except ValueError:
            quant = ""
        quant = quant.removeprefix("MOSTLY_").removeprefix("ALL_")
    name = values["general.name"]
    return HeaderFacts(
        name=name if isinstance(name, str) else "",
        architecture=str(values["general.architecture"] or ""),
        n_params=n_params,
        quant=quant,
        tensor_bytes=tensor_bytes,
        is_projector=True,
    )


class HeaderCache:
    """Header facts by (resolved path, size, mtime_ns), in a JSON file; a damaged file is
    ignored. Only the files seen in this scan are kept when saving."""

    def __init__(self, file: Path, read_header: HeaderReader) -> None:
        self._file = file
        self._read_header = read_header
        self._old = self._load()
        self._new: dict[str, dict[str, Any]] = {}
        self._changed = False

    def facts(self, path: Path) -> HeaderFacts:
        real = path.resolve()
        try:
            status = real.stat()
        except OSError:
            return read_facts(path, self._read_header)  # explains what is wrong
        key = str(real)
        entry = self._old.get(key)
        if (
            isinstance(entry, dict)
            and entry.get("size") == status.st_size
            and entry.get("mtime_ns") == status.st_mtime_ns
        ):
            try:
                facts = HeaderFacts(**entry["facts"])
                facts = replace(facts, warnings=tuple(facts.warnings))  # a list in JSON
            except (TypeError, KeyError):
                facts = None
            if facts is not None:
                self._new[key] = entry
                return facts
        facts = read_facts(path, self._read_header)
        self._new[key] = {
            "size": status.st_size,
            "mtime_ns": status.st_mtime_ns,
            "facts": asdict(facts),
        }
        self._changed = True
        return facts

    def save(self) -> None:
        if not self._changed and self._new.keys() == self._old.keys():
            return
        try:
            write_json_atomically(self._file, {"version": HEADER_CACHE_VERSION, "files": self._new})
        except OSError as exc:
            log.warning("cannot save the header cache %s: %s", self._file, exc)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            if data.get("version") != HEADER_CACHE_VERSION:
                return {}
            files = data["files"]
            return files if isinstance(files, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring the damaged header cache %s: %s", self._file, exc)
            return {}


def write_json_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
