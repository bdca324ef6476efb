"""The curated model catalog (`models/catalog.json`), shown first in the model manager.

Each entry is a good small chat model: where it comes from (a Hub repo and file, or the
starter model's wheel on PyPI), its size in bytes and SHA-256 where they were found, its
context length, licence, whether it prints its thinking, and a note. Every fact names where
it came from (`sources`) and when it was checked; an entry whose file or size could not be
confirmed is `verified: false`. At download time the Hub's own size and sha256 decide.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.core.data_files import catalog_file
from app.core.errors import HearthError

SourceKind = Literal["hub", "pypi-wheel"]
Thinking = Literal["no", "optional", "always"]
THINKING_VALUES: tuple[Thinking, ...] = ("no", "optional", "always")
THINKING_TEXT = {
    "no": "Answers directly (no thinking phase).",
    "optional": "Can think aloud when asked; answers directly by default.",
    "always": "Reasoning model: prints its thinking before every answer.",
}
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
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class CatalogError(HearthError):
    """The shipped catalog file is missing or malformed."""


@dataclass(frozen=True)
class Source:
    """Where one fact of an entry came from.

    Attributes:
        fact: Which facts ("file, size, sha256").
        where: A URL, or a repository and path, or a description of a public file.
    """

    fact: str
    where: str


@dataclass(frozen=True)
class CatalogEntry:
    """One recommended model.

    Attributes:
        id: Stable identifier ("qwen3.5-4b-q4_k_m").
        name: Display name.
        repo_id: The Hub repo ("owner/name"); None for the starter model's wheel.
        file: The GGUF file (path inside the repo for Hub entries).
        size_bytes: The file's size as published (the Hub's size decides at download).
        context_length: Training context length in tokens.
        licence: The model's licence.
        notes: What it is good at, in a sentence or two.
        architecture: llama.cpp's architecture name ("llama", "qwen35"...).
        parameters: Parameter count (nominal where the model card gives a rounded one).
        quant: "Q4_K_M"...
        source_kind: "hub" or "pypi-wheel" (the starter model).
        sha256: The file's SHA-256 where a published copy of the listing gave it.
        revision: The Hub commit the size and sha256 were published for, if known.
        thinking: "no", "optional" (off unless asked) or "always" (prints its reasoning).
        chat_template: Whether the GGUF carries a chat template; None if not confirmed.
        verified: The file and its size were confirmed from published sources.
        checked: The date (YYYY-MM-DD) the facts were checked.
        sources: Where each fact came from.
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
    sha256: str | None = None
    revision: str | None = None
    thinking: Thinking = "no"
    chat_template: bool | None = None
    verified: bool = False
    checked: str | None = None
    sources: tuple[Source, ...] = ()


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The catalog's entries, in file order (default file: the one shipped with Hearth).

    Raises:
        CatalogError: The file is missing, not JSON, or an entry lacks or garbles a field.
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
    revision = source.get("revision")
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
    if revision is not None and not (isinstance(revision, str) and len(revision) == 40):
        raise CatalogError(f"{where}: source.revision must be a 40-character commit.")
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
        sha256=_sha256(raw.get("sha256"), where),
        revision=revision,
        thinking=_thinking(raw.get("thinking", "no"), where),
        chat_template=_optional_bool(raw.get("chat_template"), "chat_template", where),
        verified=_optional_bool(raw.get("verified"), "verified", where) is True,
        checked=_checked(raw.get("checked"), where),
        sources=_sources(raw.get("sources", []), where),
    )


def _sha256(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise CatalogError(f"{where}: sha256 must be 64 lower-case hex digits or null.")
    return value


def _thinking(value: Any, where: str) -> Thinking:
    for option in THINKING_VALUES:
        if value == option:
            return option
    raise CatalogError(f"{where}: thinking must be one of {', '.join(THINKING_VALUES)}.")


def _optional_bool(value: Any, key: str, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise CatalogError(f"{where}: '{key}' must be true, false or null.")


def _checked(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise CatalogError(f"{where}: 'checked' must be a date (YYYY-MM-DD).")
    return value


def _sources(value: Any, where: str) -> tuple[Source, ...]:
    if not isinstance(value, list):
        raise CatalogError(f"{where}: 'sources' must be a list.")
    sources = []
    for item in value:
        fact = item.get("fact") if isinstance(item, dict) else None
        place = item.get("where") if isinstance(item, dict) else None
        if not (isinstance(fact, str) and fact and isinstance(place, str) and place):
            raise CatalogError(f"{where}: each source needs 'fact' and 'where' (text).")
        sources.append(Source(fact=fact, where=place))
    return tuple(sources)
