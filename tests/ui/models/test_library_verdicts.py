"""The library's "Fits" column follows the load probe: a file loaded from the window turns
"Fits" and a file that crashed llama.cpp turns "Broken", without pressing Refresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.paths import app_paths
from app.ui.models.library_tab import fit_text
from app.ui.models.model_manager import ModelManager
from tests.gguf_factory import write_tiny_gguf
from tests.gguf_fuzz import write_crashing_gguf
from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


def fits_column(manager: ModelManager) -> dict[str, tuple[str, str]]:
    """File name -> (the "Fits" text, the problem) as the library lists it now."""
    return {m.path.name: (fit_text(m), m.problem) for m in manager.library.models}


def test_the_library_shows_the_probe_verdict_after_a_load_from_the_window(
    qtbot: QtBot,
    make_window: MakeWindow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEARTH_PROBE_CACHE", str(tmp_path / "probe"))  # nothing tried yet
    paths = app_paths(tmp_path / "home").ensure()
    good = write_tiny_gguf(paths.models / "tiny.gguf", name="Tiny")
    bad = write_crashing_gguf(paths.models / "int-embeddings.gguf", "abort")
    window = make_window(paths=paths)
    manager = window.models.open_model_manager()
    qtbot.waitUntil(lambda: len(manager.library.models) == 2, timeout=TIMEOUT_MS)
    before = fits_column(manager)
    assert before[good.name][0].startswith("Not tried yet")
    assert before[bad.name][0] != "Broken"

    with qtbot.waitSignal(window.modelLoadEnded, timeout=TIMEOUT_MS):
        window.load_model(bad)
    qtbot.waitUntil(lambda: fits_column(manager)[bad.name][0] == "Broken", timeout=TIMEOUT_MS)
    assert "crash" in fits_column(manager)[bad.name][1]

    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT_MS):
        window.load_model(good)
    qtbot.waitUntil(
        lambda: fits_column(manager)[good.name][0].startswith("Fits"), timeout=TIMEOUT_MS
    )
