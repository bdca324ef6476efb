"""Qt tests here run with garbage collection on the GUI thread only, as the app does."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _collect_on_the_gui_thread(gui_thread_gc: None) -> None:
    """Worker threads never run the collector (a Qt object must die on its own thread)."""
