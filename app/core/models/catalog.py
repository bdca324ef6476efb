"""The curated model catalog (`models/catalog.json`), shown first in the model manager.

Each entry is a good small chat model: where it comes from (a Hub repo and file, or the
starter model's wheel on PyPI), its approximate size, context length, licence and a note.
The exact size and sha256 of a Hub file come from the Hub at download time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.core.data_files import catalog_file
from app.core.errors import HearthError

SourceKind = Literal["hub", "pypi-wheel"]
_REQUIRED = {
    "id": str,
    "name": str,
    "file": str,
    "size_bytes": int,
    "context_length": int,
    "licence": str,
    "notes": str,
    "architecture": str,
    "parameters": int,
    "quant": str,
    "source": dict,
}


class CatalogError(HearthError):
    """The shipped catalog file is missing or malformed."""


@dataclass(frozen=True)
class CatalogEntry:
    """One recommended model.

    Attributes:
        id: Stable identifier ("qwen2.5-1.5b-instruct-q4_k_m").
        name: Display name.
        repo_id: The Hub repo ("owner/name"); None for the starter model's wheel.
        file: The GGUF file (path inside the repo for Hub entries).
        size_bytes: Approximate size (exact for the starter model).
        context_length: Training context length in tokens.
        licence: The model's licence.
        notes: What it is good at, in a sentence or two.
        architecture: "llama", "qwen2"...
        parameters: Parameter count.
        quant: "Q4_K_M"...
        source_kind: "hub" or "pypi-wheel" (the starter model).
    """

    id: str
    name: str
    repo_id: str | None
    file: str
    size_bytes: int
    context_length: int
    licence: str
    notes: str
    architecture: str
    parameters: int
    quant: str
    source_kind: SourceKind


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The catalog's entries, in file order (default file: the one shipped with Hearth).

    Raises:
        CatalogError: The file is missing, not JSON, or an entry lacks a field.
    """
    path = path or catalog_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data["models"]
        if not isinstance(models, list):
            raise TypeError("'models' is not a list")
    except FileNotFoundError as exc:
        raise CatalogError(f"The model catalog {path} is missing; reinstall Hearth.") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CatalogError(f"The model catalog {path} is damaged ({exc}).") from exc
    return [_entry(raw, path, index) for index, raw in enumerate(models)]


def _entry(raw: Any, path: Path, index: int) -> CatalogEntry:
    where = f"entry {index + 1} of the model catalog {path}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where} is not an object.")
    for key, kind in _REQUIRED.items():
        if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
            raise CatalogError(f"{where} lacks '{key}' (a {kind.__name__}).")
    source = raw["source"]
    kind = source.get("kind")
    if kind == "hub":
        repo_id = source.get("repo")
        if not isinstance(repo_id, str) or repo_id.count("/") != 1:
            raise CatalogError(f"{where} has no Hub repo (source.repo, owner/name).")
        if source.get("file", raw["file"]) != raw["file"]:
            raise CatalogError(f"{where}: source.file and file differ.")
    elif kind == "pypi-wheel":
        repo_id = None
    else:
        raise CatalogError(f"{where} has an unknown source kind {kind!r}.")
    return CatalogEntry(
        id=raw["id"],
        name=raw["name"],
        repo_id=repo_id,
        file=raw["file"],
        size_bytes=raw["size_bytes"],
        context_length=raw["context_length"],
        licence=raw["licence"],
        notes=raw["notes"],
        architecture=raw["architecture"],
        parameters=raw["parameters"],
        quant=raw["quant"],
        source_kind=kind,
    )
