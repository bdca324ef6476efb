"""ARCHITECTURE.md stays true: every path it names in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def named_paths() -> list[str]:
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"`(app/[\w/.]*|tests/[\w/.]*\.py|pyproject\.toml)`", text)))


def test_the_map_names_paths() -> None:
    assert len(named_paths()) >= 5


def test_every_path_the_map_names_exists() -> None:
    missing = [p for p in named_paths() if not (REPO / p).exists()]
    assert missing == []


def test_every_core_and_ui_package_is_on_the_map() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    packages = [
        p.parent.relative_to(REPO).as_posix()
        for p in sorted((REPO / "app").glob("*/*/__init__.py"))
    ]
    assert packages
    unnamed = [p for p in packages if p + "/" not in text]
    assert unnamed == []


def test_every_package_ships_in_the_wheel() -> None:
    """pyproject.toml lists packages by hand: a package missing there is missing from a
    regular (non-editable) install."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "app").rglob("__init__.py")
    }
    assert found - listed == set()


MAX_MODULE_LINES = 700


def test_no_module_outgrows_its_name() -> None:
    """Small modules named for what they do: a module past this size has two jobs."""
    long = {
        p.relative_to(REPO).as_posix(): n
        for p in (REPO / "app").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
