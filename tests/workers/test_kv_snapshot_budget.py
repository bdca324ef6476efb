"""The KV snapshot budget follows the machine's free RAM; the space used is reported and
can be cleared (a real tiny model on the inference thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.events import GenerationDone
from app.core.inference.kv_snapshot import (
    MAX_SNAPSHOT_BUDGET,
    MIN_SNAPSHOT_BUDGET,
    MiB,
    snapshot_budget,
)
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf

pytestmark = [pytest.mark.qt_log_level_fail("WARNING")]
TIMEOUT_MS = 60_000


@pytest.mark.parametrize(
    ("available", "budget"),
    [
        (0, 64 * MiB),
        (100 * MiB, 64 * MiB),
        (1024 * MiB, 256 * MiB),
        (6 * 1024 * MiB, 1536 * MiB),
        (64 * 1024 * MiB, 2048 * MiB),
    ],
)
def test_budget_is_a_quarter_of_free_ram_within_bounds(available: int, budget: int) -> None:
    assert snapshot_budget(available) == budget


class Usage(QObject):
    def __init__(self, inference: InferenceThread, snapshots: KVSnapshots) -> None:
        super().__init__()
        self.loaded = False
        self.done: list[GenerationDone] = []
        self.usage: list[tuple[int, int]] = []
        self.restored: list[tuple[int, int]] = []
        inference.worker.loaded.connect(self.on_loaded)
        inference.worker.finished.connect(self.on_finished)
        snapshots.usageChanged.connect(self.on_usage)
        snapshots.keeper.restored.connect(self.on_restored)

    @Slot(object)
    def on_loaded(self, _model: object) -> None:
        self.loaded = True

    @Slot(int, object)
    def on_finished(self, _request: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.done.append(done)

    @Slot(object, object)
    def on_usage(self, used: object, budget: object) -> None:
        self.usage.append((int(used), int(budget)))  # type: ignore[call-overload]

    @Slot(int, int)
    def on_restored(self, conversation: int, tokens: int) -> None:
        self.restored.append((conversation, tokens))


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", chat_template=CHATML_TEMPLATE)


@pytest.fixture
def running(qtbot: QtBot, tiny: Path) -> Iterator[tuple[InferenceThread, KVSnapshots, Usage]]:
    inference = InferenceThread()
    snapshots = KVSnapshots(inference)
    usage = Usage(inference, snapshots)
    inference.start()
    inference.load(tiny, LoadOptions(n_ctx=256, n_threads=1))
    qtbot.waitUntil(lambda: usage.loaded, timeout=TIMEOUT_MS)
    try:
        yield inference, snapshots, usage
    finally:
        snapshots.release()
        assert inference.stop()


def test_space_used_is_reported_and_clear_empties_it(
    qtbot: QtBot, running: tuple[InferenceThread, KVSnapshots, Usage]
) -> None:
    inference, snapshots, usage = running
    assert MIN_SNAPSHOT_BUDGET <= snapshots.budget_bytes <= MAX_SNAPSHOT_BUDGET
    assert snapshots.used_bytes == 0
    snapshots.claim(7)
    settings = SamplingSettings(temperature=0.0, max_tokens=4)
    inference.generate(1, (Message("user", "the in the"),), settings)
    qtbot.waitUntil(lambda: bool(usage.done), timeout=TIMEOUT_MS)
    snapshots.save(7)
    qtbot.waitUntil(lambda: bool(usage.usage), timeout=TIMEOUT_MS)
    used, budget = usage.usage[-1]
    assert used > 0 and budget == snapshots.budget_bytes
    assert snapshots.used_bytes == used

    snapshots.clear()
    qtbot.waitUntil(lambda: snapshots.used_bytes == 0, timeout=TIMEOUT_MS)
    assert usage.usage[-1] == (0, budget)
    snapshots.restore(7)  # cleared: nothing to bring back (the cache itself is kept)
    qtbot.waitUntil(lambda: bool(usage.restored), timeout=TIMEOUT_MS)
    assert usage.restored == [(7, 0)]
