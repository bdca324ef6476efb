"""Where each model in Hearth's models folder came from: downloaded, quantized, or the starter.

One JSON file (`models/provenance.json`) maps a file's path relative to the models folder
to its origin. A file with an origin is one Hearth downloaded or made, so the library may
delete it; anything else (a file the person copied in, another app's model) is never
deleted. The file is replaced atomically; a damaged file is read as empty and kept aside.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

PROVENANCE_FILE_NAME = "provenance.json"
_FORMAT_VERSION = 1
_lock = threading.Lock()

OriginKind = Literal["download", "quantize", "starter"]


@dataclass(frozen=True)
class Origin:
    """How one file got into the models folder.

    Attributes:
        kind: "download" (from a Hub repo), "quantize" (made here) or "starter".
        repo_id: The Hub repo of a download ("owner/name").
        revision: The commit a download came from.
        sha256: The verified checksum of a download.
        source: The model a quantized file was made from (absolute path).
        quant: The quantization type of a made file ("Q4_K_M").
        created: Seconds since the epoch when the file was put in place.
    """

    kind: OriginKind
    repo_id: str | None = None
    revision: str | None = None
    sha256: str | None = None
    source: str | None = None
    quant: str | None = None
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, without the empty ones."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def record_origin(models_dir: Path, file: Path, origin: Origin) -> None:
    """Remember where `file` (inside `models_dir`) came from, replacing any earlier record."""
    if not origin.created:
        origin = Origin(**{**origin.to_dict(), "created": time.time()})
    with _lock:
        records = _read(models_dir)
        records[_key(models_dir, file)] = origin.to_dict()
        _write(models_dir, records)


def forget_origin(models_dir: Path, file: Path) -> None:
    """Drop the record of a file (after it was deleted)."""
    with _lock:
        records = _read(models_dir)
        if records.pop(_key(models_dir, file), None) is not None:
            _write(models_dir, records)


def read_origins(models_dir: Path) -> dict[Path, Origin]:
    """Every recorded file (absolute path) and its origin; unusable entries are skipped."""
    with _lock:
        records = _read(models_dir)
    origins: dict[Path, Origin] = {}
    for relative, entry in records.items():
        try:
            origins[(models_dir / relative).resolve()] = Origin(**entry)
        except TypeError as exc:
            log.warning("ignoring the provenance record of %s: %s", relative, exc)
    return origins


def origin_of(models_dir: Path, file: Path) -> Origin | None:
    """The origin of one file, or None if Hearth did not download or make it."""
    return read_origins(models_dir).get(file.resolve())


def _key(models_dir: Path, file: Path) -> str:
    """The file's path relative to the models folder, with forward slashes."""
    try:
        return file.resolve().relative_to(models_dir.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{file} is not inside {models_dir}") from None


def _read(models_dir: Path) -> dict[str, Any]:
    path = models_dir / PROVENANCE_FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["files"]
        if not isinstance(records, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        damaged = path.with_name(path.name + ".damaged")
        log.warning("%s is unusable (%s); kept as %s", path, exc, damaged.name)
        try:
            os.replace(path, damaged)
        except OSError:
            log.exception("cannot move %s aside", path)
        return {}
    return {str(k): v for k, v in records.items() if isinstance(v, dict)}


def _write(models_dir: Path, records: dict[str, Any]) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / PROVENANCE_FILE_NAME
    payload = json.dumps({"version": _FORMAT_VERSION, "files": records}, indent=1)
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=models_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
