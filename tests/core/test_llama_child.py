"""Thread names the OS shows, for profiles of the engine host."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from app.core.llama_child import name_os_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names read from /proc")
def test_a_thread_names_itself_where_the_os_shows_it_cut_to_15_bytes() -> None:
    seen: list[str] = []

    def run() -> None:
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
        seen.append(comm.read_text().strip())
        name_os_thread("hearth-a-very-long-thread-name")
        seen.append(comm.read_text().strip())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen[0] != "hearth-a-very-l"
    assert seen[1] == "hearth-a-very-l"
