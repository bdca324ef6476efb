"""Per-conversation KV snapshots on the inference thread, with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)
GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
TIMEOUT_MS = 60_000
LIGHTHOUSE = (
    Message("system", "You are a patient guide to lighthouses and the sea."),
    Message("user", "Tell me one fact about lighthouses on rocky coasts in the north."),
)
BREAD = (Message("user", "How long should sourdough rise?"),)


class Recorder(QObject):
    """Receives the worker's and the keeper's signals on the GUI thread."""

    def __init__(self, inference: InferenceThread, snapshots: KVSnapshots) -> None:
        super().__init__()
        self.loaded: list[LoadedModel] = []
        self.done: dict[int, GenerationDone] = {}
        self.saved: list[tuple[int, int]] = []
        self.restored: list[tuple[int, int]] = []
        inference.worker.loaded.connect(self.on_loaded)
        inference.worker.finished.connect(self.on_finished)
        snapshots.keeper.saved.connect(self.on_saved)
        snapshots.keeper.restored.connect(self.on_restored)

    @Slot(object)
    def on_loaded(self, model: object) -> None:
        assert isinstance(model, LoadedModel)
        self.loaded.append(model)

    @Slot(int, object)
    def on_finished(self, request_id: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.done[request_id] = done

    @Slot(int, int)
    def on_saved(self, conversation_id: int, size: int) -> None:
        self.saved.append((conversation_id, size))

    @Slot(int, int)
    def on_restored(self, conversation_id: int, tokens: int) -> None:
        self.restored.append((conversation_id, tokens))


@pytest.fixture
def running(
    qtbot: QtBot, starter_model: Path
) -> Iterator[tuple[InferenceThread, KVSnapshots, Recorder]]:
    inference = InferenceThread()
    snapshots = KVSnapshots(inference)
    recorder = Recorder(inference, snapshots)
    inference.start()
    inference.load(starter_model, OPTIONS)
    qtbot.waitUntil(lambda: bool(recorder.loaded), timeout=TIMEOUT_MS)
    try:
        yield inference, snapshots, recorder
    finally:
        snapshots.release()
        assert inference.stop()
        assert inference.qthread.isFinished()
        assert snapshots.keeper.thread() is snapshots.thread()


def reply(
    qtbot: QtBot,
    inference: InferenceThread,
    snapshots: KVSnapshots,
    recorder: Recorder,
    request_id: int,
    conversation_id: int,
    messages: tuple[Message, ...],
) -> GenerationDone:
    snapshots.claim(conversation_id)
    inference.generate(request_id, messages, GREEDY)
    qtbot.waitUntil(lambda: request_id in recorder.done, timeout=TIMEOUT_MS)
    return recorder.done[request_id]


def test_switching_back_restores_the_cache_so_history_is_not_read_again(
    qtbot: QtBot, running: tuple[InferenceThread, KVSnapshots, Recorder]
) -> None:
    inference, snapshots, recorder = running
    first = reply(qtbot, inference, snapshots, recorder, 1, 10, LIGHTHOUSE)
    snapshots.save(10)  # leaving conversation 10
    qtbot.waitUntil(lambda: bool(recorder.saved), timeout=TIMEOUT_MS)
    assert recorder.saved[0][0] == 10 and recorder.saved[0][1] > 0

    reply(qtbot, inference, snapshots, recorder, 2, 20, BREAD)  # the cache is now bread's
    snapshots.save(20)
    snapshots.restore(10)  # back to the lighthouse
    qtbot.waitUntil(lambda: bool(recorder.restored), timeout=TIMEOUT_MS)
    assert recorder.restored[0][0] == 10 and recorder.restored[0][1] >= first.stats.prompt_tokens

    follow_up = (*LIGHTHOUSE, Message("assistant", first.text), Message("user", "And another?"))
    again = reply(qtbot, inference, snapshots, recorder, 3, 10, follow_up)
    assert again.stats.cached_tokens >= first.stats.prompt_tokens


def test_without_a_snapshot_the_history_is_read_again(
    qtbot: QtBot, running: tuple[InferenceThread, KVSnapshots, Recorder]
) -> None:
    inference, snapshots, recorder = running
    first = reply(qtbot, inference, snapshots, recorder, 1, 10, LIGHTHOUSE)
    reply(qtbot, inference, snapshots, recorder, 2, 20, BREAD)
    snapshots.restore(10)  # nothing was saved for 10
    qtbot.waitUntil(lambda: bool(recorder.restored), timeout=TIMEOUT_MS)
    assert recorder.restored == [(10, 0)]
    follow_up = (*LIGHTHOUSE, Message("assistant", first.text), Message("user", "And another?"))
    again = reply(qtbot, inference, snapshots, recorder, 3, 10, follow_up)
    assert again.stats.cached_tokens < first.stats.prompt_tokens // 2


def test_a_chat_never_saves_another_chats_cache(
    qtbot: QtBot, running: tuple[InferenceThread, KVSnapshots, Recorder]
) -> None:
    inference, snapshots, recorder = running
    reply(qtbot, inference, snapshots, recorder, 1, 10, LIGHTHOUSE)
    snapshots.save(20)  # 20 never generated: the cache is 10's
    snapshots.restore(20)
    qtbot.waitUntil(lambda: bool(recorder.restored), timeout=TIMEOUT_MS)
    assert recorder.saved == []
    assert recorder.restored == [(20, 0)]


def test_loading_a_model_drops_the_snapshots(
    qtbot: QtBot, running: tuple[InferenceThread, KVSnapshots, Recorder], starter_model: Path
) -> None:
    inference, snapshots, recorder = running
    reply(qtbot, inference, snapshots, recorder, 1, 10, LIGHTHOUSE)
    snapshots.save(10)
    qtbot.waitUntil(lambda: bool(recorder.saved), timeout=TIMEOUT_MS)
    inference.load(starter_model, OPTIONS)
    qtbot.waitUntil(lambda: len(recorder.loaded) == 2, timeout=TIMEOUT_MS)
    snapshots.restore(10)
    qtbot.waitUntil(lambda: bool(recorder.restored), timeout=TIMEOUT_MS)
    assert recorder.restored == [(10, 0)]


def test_the_budget_evicts_the_least_recently_used(qtbot: QtBot, starter_model: Path) -> None:
    inference = InferenceThread()
    snapshots = KVSnapshots(inference, max_snapshots=1)
    recorder = Recorder(inference, snapshots)
    inference.start()
    try:
        inference.load(starter_model, OPTIONS)
        qtbot.waitUntil(lambda: bool(recorder.loaded), timeout=TIMEOUT_MS)
        reply(qtbot, inference, snapshots, recorder, 1, 10, LIGHTHOUSE)
        snapshots.save(10)
        reply(qtbot, inference, snapshots, recorder, 2, 20, BREAD)
        snapshots.save(20)  # only one fits: 10 goes
        snapshots.restore(10)
        qtbot.waitUntil(lambda: bool(recorder.restored), timeout=TIMEOUT_MS)
        assert [c for c, _ in recorder.saved] == [10, 20]
        assert recorder.restored == [(10, 0)]
    finally:
        snapshots.release()
        assert inference.stop()
