"""The model manager window with real files: the library tab lists and deletes, the quantize
dialog runs llama.cpp's quantizer in a child process, the main window loads a picked model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFrame, QLabel, QLineEdit, QTreeWidget
from pytestqt.qtbot import QtBot

from app.core.models.library import LibraryModel
from app.core.models.provenance import Origin, record_origin
from app.core.models.quantize import QuantizeResult
from app.core.paths import AppPaths, app_paths
from app.ui.models.library_tab import bits_per_weight, details_html
from app.ui.models.model_manager import ModelManager
from tests.fake_hub import FakeHub, serving_hub
from tests.gguf_factory import write_tiny_gguf

TIMEOUT_MS = 60_000


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "home").ensure()


@pytest.fixture
def manager(qtbot: QtBot, paths: AppPaths) -> Iterator[ModelManager]:
    window = ModelManager(paths, include_other_apps=False)
    qtbot.addWidget(window)
    yield window
    assert window.shutdown(TIMEOUT_MS)  # no scan may outlive the window (Qt aborts)


def wait_scanned(qtbot: QtBot, manager: ModelManager) -> list[LibraryModel]:
    qtbot.waitUntil(lambda: not manager.library.is_scanning, timeout=TIMEOUT_MS)
    return manager.library.models


def rescan(qtbot: QtBot, manager: ModelManager) -> list[LibraryModel]:
    wait_scanned(qtbot, manager)  # the scan the window started when it opened
    with qtbot.waitSignal(manager.library.scanned, timeout=TIMEOUT_MS):
        manager.library.refresh()
    return manager.library.models


def test_the_library_lists_models_with_their_memory_math(
    qtbot: QtBot, paths: AppPaths, starter_model: Path
) -> None:
    os.link(starter_model, paths.models / starter_model.name)
    write_tiny_gguf(paths.models / "tiny-f32.gguf", name="Tiny F32")
    manager = ModelManager(paths, include_other_apps=False)
    qtbot.addWidget(manager)
    models = wait_scanned(qtbot, manager)
    by_name = {m.name: m for m in models}
    assert set(by_name) >= {"Tiny F32"}
    starter = next(m for m in models if m.path.name == starter_model.name)
    assert starter.quant == "Q4_1"
    assert starter.n_params > 100_000_000
    bits = bits_per_weight(starter.size_bytes, starter.n_params)
    assert bits is not None and 4.0 < bits < 7.0  # Q4_1 is 5 bits per weight plus F32 norms
    assert manager.library.select_path(starter.path)
    text = details_html(starter)
    assert "parameters" in text and "bits per weight" in text and "Q4_1" in text
    with qtbot.waitSignal(manager.library.loadRequested, timeout=1000) as loaded:
        manager.library.load_selected()
    assert loaded.args == [starter.path]
    assert manager.shutdown(TIMEOUT_MS)  # a rescan still running would abort at teardown


def test_only_models_hearth_made_can_be_deleted(
    qtbot: QtBot, manager: ModelManager, paths: AppPaths
) -> None:
    (paths.models / "hub" / "me" / "repo").mkdir(parents=True)
    mine = write_tiny_gguf(paths.models / "hub" / "me" / "repo" / "made.gguf", name="Made")
    theirs = write_tiny_gguf(paths.models / "copied-in.gguf", name="Copied")
    record_origin(paths.models, mine, Origin(kind="download", repo_id="me/repo"))
    models = rescan(qtbot, manager)
    by_name = {m.name: m for m in models}
    assert by_name["Made"].deletable and not by_name["Copied"].deletable

    delete_button = manager.library.findChild(object, "deleteModelButton")
    assert manager.library.select_path(theirs)
    assert not delete_button.isEnabled()
    manager.library.delete_selected(confirm=False)  # refused quietly: nothing happens
    assert theirs.exists()

    assert manager.library.select_path(mine)
    assert delete_button.isEnabled()
    with qtbot.waitSignal(manager.library.scanned, timeout=TIMEOUT_MS):
        manager.library.delete_selected(confirm=False)
    assert not mine.exists()
    assert theirs.exists()
    assert [m.name for m in manager.library.models] == ["Copied"]


def test_quantize_dialog_makes_a_model_that_appears_in_the_library(
    qtbot: QtBot, manager: ModelManager, paths: AppPaths
) -> None:
    source = write_tiny_gguf(
        paths.models / "tiny-f16.gguf", name="Tiny F16", dtype="f16", n_embd=256, n_ff=512
    )
    models = rescan(qtbot, manager)
    model = next(m for m in models if m.path == source)
    manager.open_quantize(model)
    dialog = manager.quantize_dialog
    assert dialog is not None
    dialog.select_target("Q8_0")
    qtbot.waitUntil(
        lambda: dialog.plan is not None and dialog.plan.target == "Q8_0", timeout=TIMEOUT_MS
    )
    plan = dialog.plan
    assert plan is not None and plan.predicted_size < plan.source_size
    label = dialog.findChild(object, "quantizePlanLabel").text()
    assert "Q8_0" in label and "F16" in label.upper()

    with qtbot.waitSignal(manager.modelAdded, timeout=TIMEOUT_MS) as added:
        dialog.start()
    result = dialog.outcome
    assert isinstance(result, QuantizeResult)
    assert added.args == [result.output] and result.output.is_file()
    qtbot.waitUntil(
        lambda: any(m.path == result.output for m in manager.library.models), timeout=TIMEOUT_MS
    )
    made = next(m for m in manager.library.models if m.path == result.output)
    assert made.quant == "Q8_0" and made.deletable
    with qtbot.waitSignal(manager.loadRequested, timeout=1000) as load:
        dialog.findChild(object, "loadQuantizedButton").click()
    assert load.args == [result.output]


def test_requantizing_needs_consent(
    qtbot: QtBot, manager: ModelManager, paths: AppPaths, starter_model: Path
) -> None:
    os.link(starter_model, paths.models / starter_model.name)
    models = rescan(qtbot, manager)
    manager.open_quantize(next(m for m in models if m.quant == "Q4_1"))
    dialog = manager.quantize_dialog
    assert dialog is not None
    label = dialog.findChild(object, "quantizePlanLabel")
    start = dialog.findChild(object, "startQuantizeButton")
    qtbot.waitUntil(lambda: "quantized" in label.text().lower(), timeout=TIMEOUT_MS)
    assert dialog.plan is None and not start.isEnabled()
    dialog.set_requantize(True)
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=TIMEOUT_MS)
    assert dialog.plan is not None and dialog.plan.warning
    assert start.isEnabled()


# ----- the Hub, through the real huggingface_hub client and a fake Hub on 127.0.0.1 -----

REPO = "tiny-org/Tiny-Chat-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serving_hub(monkeypatch, tmp_path)


@pytest.fixture
def hub_manager(
    qtbot: QtBot, paths: AppPaths, hub: FakeHub, tmp_path: Path
) -> Iterator[ModelManager]:
    tiny = write_tiny_gguf(
        tmp_path / "tiny.gguf", n_layer=4, n_embd=256, n_ff=512, name="Tiny Chat"
    )
    repo = hub.add_repo(
        REPO,
        downloads=1234,
        likes=56,
        gguf={"total": 5_000_000, "architecture": "llama"},
        card_data={"license": "apache-2.0"},
    )
    data = tiny.read_bytes()
    repo.add("Tiny-Chat-Q8_0.gguf", data)
    repo.add("Tiny-Chat-Q4_K_M.gguf", data)
    repo.add("mmproj-Tiny-Chat-f16.gguf", data[: len(data) // 4])
    hub.add_repo("other-org/Unrelated", downloads=1)
    window = ModelManager(paths, endpoint=hub.url, include_other_apps=False)
    qtbot.addWidget(window)
    wait_scanned(qtbot, window)
    yield window
    assert window.shutdown(TIMEOUT_MS)


def search_and_open(qtbot: QtBot, manager: ModelManager, query: str) -> None:
    tab = manager.hub
    tab.findChild(QLineEdit, "hubQuery").setText(query)
    tab.search()
    results = tab.findChild(QTreeWidget, "hubResults")
    qtbot.waitUntil(
        lambda: results.topLevelItemCount() > 0 and "★" not in results.topLevelItem(0).text(0),
        timeout=TIMEOUT_MS,
    )
    results.setCurrentItem(results.topLevelItem(0))
    files = tab.findChild(QTreeWidget, "hubFiles")
    gated = tab.findChild(QFrame, "gatedBox")
    qtbot.waitUntil(
        lambda: files.topLevelItemCount() > 0 or not gated.isHidden(), timeout=TIMEOUT_MS
    )


def test_recommended_models_show_before_any_search(qtbot: QtBot, manager: ModelManager) -> None:
    results = manager.hub.findChild(QTreeWidget, "hubResults")
    names = [results.topLevelItem(i).text(0) for i in range(results.topLevelItemCount())]
    assert names and all(name.startswith("★") for name in names)
    assert any("SmolLM2 135M" in name for name in names)


def test_search_pick_and_download_a_model_into_the_library(
    qtbot: QtBot, hub_manager: ModelManager, hub: FakeHub, paths: AppPaths
) -> None:
    search_and_open(qtbot, hub_manager, "tiny")
    results = hub_manager.hub.findChild(QTreeWidget, "hubResults")
    row = results.topLevelItem(0)
    assert row.text(0) == REPO and row.text(1) == "5M" and row.text(3) == "apache-2.0"
    option = hub_manager.hub.selected_option()
    assert option is not None and option.quant == "Q4_K_M"  # the recommended file
    files = hub_manager.hub.findChild(QTreeWidget, "hubFiles")
    labels = [files.topLevelItem(i).text(0) for i in range(files.topLevelItemCount())]
    assert any("vision projector" in label for label in labels)
    assert files.currentItem().text(3) == "Fits"

    with qtbot.waitSignal(hub_manager.modelAdded, timeout=TIMEOUT_MS) as added:
        hub_manager.hub.download_selected()
    path = added.args[0]
    assert path.is_file() and path.name == "Tiny-Chat-Q4_K_M.gguf"
    assert paths.models in path.parents
    row_widget = hub_manager.downloads.row(hub_manager.queue.items()[0].key)
    assert row_widget is not None and "Done" in row_widget.status.text()
    qtbot.waitUntil(
        lambda: any(m.path == path for m in hub_manager.library.models), timeout=TIMEOUT_MS
    )
    model = next(m for m in hub_manager.library.models if m.path == path)
    assert model.repo_id == REPO and model.deletable and model.quant


def test_a_paused_download_resumes_with_a_range_request(
    qtbot: QtBot, hub_manager: ModelManager, hub: FakeHub
) -> None:
    search_and_open(qtbot, hub_manager, "tiny")
    hub.faults.throttle_bps = 2_000_000
    hub_manager.hub.download_selected()
    queue = hub_manager.queue
    key = queue.items()[0].key
    qtbot.waitUntil(lambda: queue.item(key).done_bytes > 0, timeout=TIMEOUT_MS)
    queue.pause(key)
    qtbot.waitUntil(lambda: queue.item(key).state == "paused", timeout=TIMEOUT_MS)
    hub.faults.throttle_bps = None
    with qtbot.waitSignal(queue.completed, timeout=TIMEOUT_MS):
        queue.resume(key)
    ranges = [r.range for r in hub.downloads_of("Tiny-Chat-Q4_K_M.gguf") if r.method == "GET"]
    assert ranges[0] in (None, "bytes=0-") and ranges[-1] not in (None, "bytes=0-")


def test_a_gated_repo_asks_for_a_token_then_downloads(
    qtbot: QtBot, hub_manager: ModelManager, hub: FakeHub
) -> None:
    hub.repos[REPO].gated = "manual"
    hub.allow("hf_test_token", REPO)
    search_and_open(qtbot, hub_manager, "tiny")
    gated = hub_manager.hub.findChild(QFrame, "gatedBox")
    qtbot.waitUntil(lambda: not gated.isHidden(), timeout=TIMEOUT_MS)
    assert "licence" in hub_manager.hub.findChild(QLabel, "gatedLabel").text()

    queue = hub_manager.queue
    hub_manager.hub.download_selected()  # without a token: refused, with the reason
    first = queue.items()[0]
    qtbot.waitUntil(lambda: first.state == "failed", timeout=TIMEOUT_MS)
    assert "gated" in first.message and "licence" in first.message
    assert not list(hub_manager.library.models)

    hub_manager.hub.findChild(QLineEdit, "tokenField").setText("hf_test_token")
    hub_manager.hub.save_token_and_retry()
    files = hub_manager.hub.findChild(QTreeWidget, "hubFiles")
    qtbot.waitUntil(lambda: hub_manager.hub.selected_option() is not None, timeout=TIMEOUT_MS)
    assert files.topLevelItemCount() > 0
    with qtbot.waitSignal(queue.completed, timeout=TIMEOUT_MS):
        hub_manager.hub.download_selected()
    assert queue.items()[-1].state == "done"


def test_a_dropped_download_shows_retrying_then_finishes(
    qtbot: QtBot, hub_manager: ModelManager, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_DOWNLOAD_BACKOFF_S", "1.5")
    search_and_open(qtbot, hub_manager, "tiny")
    hub.faults.drops = [300_000, 300_000]
    hub_manager.hub.download_selected()
    queue = hub_manager.queue
    key = queue.items()[0].key
    row = hub_manager.downloads.row(key)
    assert row is not None
    qtbot.waitUntil(lambda: "retrying (1/5)" in row.status.text(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "retrying (2/5)" in row.status.text(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Done" in row.status.text(), timeout=TIMEOUT_MS)
    ranges = [r.range for r in hub.downloads_of("Tiny-Chat-Q4_K_M.gguf")]
    assert ranges == [None, "bytes=300000-", "bytes=600000-"]
