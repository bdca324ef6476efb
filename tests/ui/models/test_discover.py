"""The Discover tab as a person reads it: whole names, only columns that have something
to say, and a detail pane with the licence, the memory math on this machine, an
"unverified" note where due, and the model card, fetched only when a model is selected.
The Hub is the fake one on 127.0.0.1, through the real huggingface_hub client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSize
from PySide6.QtWidgets import QLineEdit, QTextBrowser, QTreeWidget
from pytestqt.qtbot import QtBot

from app.core.data_files import catalog_file
from app.core.models.catalog import load_catalog
from app.core.paths import AppPaths, app_paths
from app.ui.models.hub_tab import HUB_ONLY_COLUMNS
from app.ui.models.model_details import UNVERIFIED_NOTE, ModelDetails
from app.ui.models.model_manager import GEOMETRY_FILE, ModelManager
from app.ui.window_geometry import first_start_size
from tests.fake_hub import FakeHub, serving_hub

TIMEOUT_MS = 30_000
CARD = "---\nlicense: apache-2.0\n---\n# Qwen3.5 4B in GGUF\n\nA **capable** small model.\n"
ENTRY = next(e for e in load_catalog() if e.id == "qwen3.5-4b-q4_k_m")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serving_hub(monkeypatch, tmp_path)


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "home").ensure()


@pytest.fixture
def manager(qtbot: QtBot, paths: AppPaths, hub: FakeHub) -> Iterator[ModelManager]:
    assert ENTRY.repo_id is not None
    repo = hub.add_repo(ENTRY.repo_id, downloads=77, likes=5, card_data={"license": "apache-2.0"})
    repo.add(ENTRY.file, b"GGUF" + bytes(4000))
    repo.set_card(CARD)
    other = hub.add_repo("someone/Qwen-Tiny-GGUF", downloads=4321, likes=12)
    other.add("qwen-tiny-Q4_K_M.gguf", b"GGUF" + bytes(2000))
    window = ModelManager(paths, endpoint=hub.url, include_other_apps=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: not window.library.is_scanning, timeout=TIMEOUT_MS)
    yield window
    assert window.shutdown(TIMEOUT_MS)


def _results(manager: ModelManager) -> QTreeWidget:
    return manager.hub.findChild(QTreeWidget, "hubResults")


def _row_of(results: QTreeWidget, name: str) -> int:
    texts = [results.topLevelItem(i).text(0) for i in range(results.topLevelItemCount())]
    return next(i for i, text in enumerate(texts) if name in text)


def test_catalog_names_are_whole_and_hub_only_columns_hidden(manager: ModelManager) -> None:
    results = _results(manager)
    metrics = results.fontMetrics()
    for row in range(results.topLevelItemCount()):
        text = results.topLevelItem(row).text(0)
        assert results.columnWidth(0) >= metrics.horizontalAdvance(text), text
    assert all(results.isColumnHidden(column) for column in HUB_ONLY_COLUMNS)
    assert not any(results.isColumnHidden(column) for column in range(4))


def test_selecting_a_catalog_model_fetches_its_card_and_shows_the_memory_math(
    qtbot: QtBot, manager: ModelManager, hub: FakeHub
) -> None:
    assert not [r for r in hub.requests if "README" in r.path]  # nothing before a selection
    results = _results(manager)
    results.setCurrentItem(results.topLevelItem(_row_of(results, ENTRY.name)))
    details = manager.hub.findChild(QTextBrowser, "hubDetails")
    assert isinstance(details, ModelDetails)
    qtbot.waitUntil(lambda: "capable" in details.toPlainText(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: details.fit is not None, timeout=TIMEOUT_MS)
    text = details.toPlainText()
    assert "Licence: Apache-2.0" in text and "Qwen3.5 4B in GGUF" in text
    assert "license: apache-2.0" not in text  # the card's YAML header is not shown
    assert "Memory math (Q4_K_M)" in text and "bits per weight" in text
    assert "Unverified" not in text
    assert text.index("Memory math") < text.index("capable") < text.index("Sources of these")
    assert "capable" in details.toMarkdown()  # rendered from Markdown, not shown raw
    readme = [r for r in hub.requests if r.path.endswith("/README.md")]
    assert [r.path for r in readme] == [f"/{ENTRY.repo_id}/resolve/main/README.md"]


def test_a_search_shows_hub_columns_and_the_models_card_line(
    qtbot: QtBot, manager: ModelManager, hub: FakeHub
) -> None:
    manager.hub.findChild(QLineEdit, "hubQuery").setText("tiny")
    manager.hub.search()
    results = _results(manager)
    qtbot.waitUntil(
        lambda: results.topLevelItemCount() == 1 and "★" not in results.topLevelItem(0).text(0),
        timeout=TIMEOUT_MS,
    )
    assert not any(results.isColumnHidden(column) for column in HUB_ONLY_COLUMNS)
    assert results.topLevelItem(0).text(4) == "4,321"
    results.setCurrentItem(results.topLevelItem(0))
    details = manager.hub.findChild(QTextBrowser, "hubDetails")
    qtbot.waitUntil(lambda: "no model card" in details.toPlainText(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: details.fit is not None, timeout=TIMEOUT_MS)
    assert "someone/Qwen-Tiny-GGUF" in details.toPlainText()
    assert details.fit.label == "Q4_K_M" and details.fit.size_bytes == 2004
    fetched = {r.path.split("/resolve/")[0] for r in hub.requests if "/resolve/" in r.path}
    assert fetched == {"/someone/Qwen-Tiny-GGUF"}  # only the selected model's card


def test_replacing_the_list_does_not_open_its_other_models(
    qtbot: QtBot, manager: ModelManager, hub: FakeHub
) -> None:
    results = _results(manager)
    results.setCurrentItem(results.topLevelItem(_row_of(results, ENTRY.name)))
    details = manager.hub.findChild(QTextBrowser, "hubDetails")
    qtbot.waitUntil(lambda: "capable" in details.toPlainText(), timeout=TIMEOUT_MS)
    manager.hub.show_recommended()  # the same list again, as after clearing a search
    manager.hub.findChild(QLineEdit, "hubQuery").setText("tiny")
    manager.hub.search()
    qtbot.waitUntil(lambda: "★" not in results.topLevelItem(0).text(0), timeout=TIMEOUT_MS)
    assert manager.hub.wait_for_jobs(TIMEOUT_MS)
    listed = {r.path for r in hub.requests if r.path.startswith("/api/models/")}
    assert all(ENTRY.repo_id in path for path in listed), listed


def test_an_unverified_entry_says_so(qtbot: QtBot, tmp_path: Path) -> None:
    raw = json.loads(catalog_file().read_text(encoding="utf-8"))
    entry = raw["models"][1]
    entry["verified"] = False
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [entry]}), encoding="utf-8")
    details = ModelDetails()
    qtbot.addWidget(details)
    details.show_entry(load_catalog(path)[0])
    assert "Unverified:" in details.toPlainText()
    assert UNVERIFIED_NOTE.startswith("**Unverified:**")


def test_first_start_size_is_a_share_of_the_screen() -> None:
    assert first_start_size(QSize(1600, 1000)) == QSize(1280, 800)
    assert first_start_size(QSize(1024, 640)) == QSize(900, 600)
    assert first_start_size(QSize(800, 500)) == QSize(800, 500)


def test_the_model_manager_remembers_its_geometry(qtbot: QtBot, paths: AppPaths) -> None:
    first = ModelManager(paths, include_other_apps=False)
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: not first.library.is_scanning, timeout=TIMEOUT_MS)
    screen = first.screen().availableGeometry().size()
    assert first.size() == first_start_size(screen)
    first.show()
    first.resize(640, 480)
    qtbot.waitUntil(lambda: first.size() == QSize(640, 480))
    first.close()
    assert first.shutdown(TIMEOUT_MS)
    assert (paths.config / GEOMETRY_FILE).is_file()
    second = ModelManager(paths, include_other_apps=False)
    qtbot.addWidget(second)
    qtbot.waitUntil(lambda: not second.library.is_scanning, timeout=TIMEOUT_MS)
    assert second.size() == QSize(640, 480)
    assert second.shutdown(TIMEOUT_MS)
