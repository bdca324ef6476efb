"""The shipped model catalog: its schema, and that every entry is consistent with itself
(quant and file name, size and parameters x bits per weight, licence, sources)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.core.data_files import catalog_file
from app.core.models.catalog import THINKING_VALUES, CatalogEntry, CatalogError, load_catalog
from app.core.models.hub import quant_of
from app.core.models.starter import STARTER

GB = 1_000_000_000
# Typical bits per weight of a whole llama.cpp file in each quantization (embeddings and
# output tensors included), from llama.cpp's quantize table.
NOMINAL_BPW = {
    "Q4_0": 4.5,
    "Q4_1": 5.0,
    "Q4_K_S": 4.6,
    "Q4_K_M": 4.85,
    "Q5_K_M": 5.7,
    "Q6_K": 6.6,
    "Q8_0": 8.5,
}
ENTRIES = load_catalog()
RAW = json.loads(catalog_file().read_text(encoding="utf-8"))


def _ids(entries: list[CatalogEntry]) -> list[str]:
    return [entry.id for entry in entries]


def test_the_starter_comes_first_and_matches_the_wheel() -> None:
    starter = ENTRIES[0]
    assert starter.source_kind == "pypi-wheel" and starter.repo_id is None
    assert (starter.file, starter.size_bytes, starter.sha256, starter.quant) == (
        STARTER.filename,
        STARTER.size,
        STARTER.sha256,
        "Q4_1",
    )
    source = RAW["models"][0]["source"]
    assert (source["package"], source["version"], source["member"]) == (
        STARTER.package,
        STARTER.version,
        STARTER.member,
    )


def test_the_catalog_covers_the_sizes_laptops_run() -> None:
    hub = [e for e in ENTRIES if e.source_kind == "hub"]
    assert len(hub) == len(ENTRIES) - 1 and len(set(_ids(ENTRIES))) == len(ENTRIES)
    billions = [e.parameters / GB for e in hub]
    for low, high in ((0.5, 1.2), (1.5, 2.2), (3.0, 4.5), (7.0, 9.5)):
        assert any(low <= b <= high for b in billions), (low, high)
    assert any(e.thinking == "always" for e in hub)  # the reasoning model is marked


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_an_entry_is_consistent(entry: CatalogEntry) -> None:
    assert entry.file.endswith(".gguf") and entry.licence.strip() and entry.notes.strip()
    assert quant_of(entry.file) == entry.quant, "the quant must match the file name"
    assert entry.quant in NOMINAL_BPW, f"add {entry.quant}'s bits per weight to the test"
    bpw = entry.size_bytes * 8 / entry.parameters
    nominal = NOMINAL_BPW[entry.quant]
    assert 0.85 * nominal <= bpw <= 1.35 * nominal, f"{bpw:.2f} bits per weight"
    assert entry.context_length >= 2048 and entry.thinking in THINKING_VALUES
    assert entry.checked is not None and entry.checked <= RAW["checked"]
    if entry.source_kind == "hub":
        assert entry.repo_id is not None and entry.repo_id.count("/") == 1
        assert entry.architecture and entry.size_bytes < 8 * GB


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.verified], ids=lambda e: e.id)
def test_a_verified_entry_says_where_its_file_and_size_came_from(entry: CatalogEntry) -> None:
    facts = " ".join(source.fact for source in entry.sources)
    assert "size" in facts and "file" in facts
    assert all(source.where.strip() for source in entry.sources)
    assert re.search(r"licen[cs]e", facts + " ".join(s.where for s in entry.sources))


def _write(tmp_path: Path, **changes: Any) -> Path:
    raw = json.loads(json.dumps(RAW["models"][1]))
    for key, value in changes.items():
        if value is None and key in raw:
            del raw[key]
        else:
            raw[key] = value
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [raw]}), encoding="utf-8")
    return path


def test_optional_facts_default_to_unverified(tmp_path: Path) -> None:
    path = _write(tmp_path, verified=None, sources=None, sha256=None, checked=None)
    (entry,) = load_catalog(path)
    assert not entry.verified and entry.sources == () and entry.sha256 is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "ABC"}, "sha256 must be 64"),
        ({"thinking": "sometimes"}, "thinking must be one of"),
        ({"verified": "yes"}, "'verified' must be true, false or null"),
        ({"checked": "last week"}, "'checked' must be a date"),
        ({"sources": [{"fact": "size"}]}, "each source needs 'fact' and 'where'"),
        ({"size_bytes": "1 GB"}, "lacks 'size_bytes'"),
    ],
)
def test_a_garbled_field_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, **change))


def test_a_damaged_catalog_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "catalog.json"
    broken.write_text('{"models": [{"id": "x"}]}', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"entry 1 .* lacks 'name'"):
        load_catalog(broken)
    with pytest.raises(CatalogError, match="missing"):
        load_catalog(tmp_path / "nope.json")
