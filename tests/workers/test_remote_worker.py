"""The inference worker driving a remote model: `hearth serve` on loopback, the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.events import StopReason
from app.core.inference.messages import Message
from app.core.inference.remote import RemoteBackend
from app.core.inference.remote_http import Endpoint
from app.core.inference.sampling import SamplingSettings
from app.workers.inference_thread import InferenceThread
from tests.core.server.conftest import Served, start_serve, stop_serve
from tests.workers.test_inference_worker import Recorder, stop_and_check

HELLO = (Message("user", "Say hello in one short sentence."),)
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def served(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_serve(tmp_path_factory.mktemp("worker-remote"), starter_model)
    yield server
    stop_serve(server)


class RemoteRecorder(QObject):
    def __init__(self, inference: InferenceThread) -> None:
        super().__init__()
        self.connected: list[object] = []
        self.failed: list[str] = []
        self.explore_failed: list[str] = []
        inference.worker.remoteConnected.connect(self.on_connected)
        inference.worker.remoteFailed.connect(self.on_failed)
        inference.worker.exploreFailed.connect(self.on_explore_failed)

    @Slot(object)
    def on_connected(self, backend: object) -> None:
        self.connected.append(backend)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.failed.append(message)

    @Slot(int, str)
    def on_explore_failed(self, _rid: int, message: str) -> None:
        self.explore_failed.append(message)


def test_the_worker_streams_stops_and_explains_with_a_remote_model(
    qtbot: QtBot, served: Served
) -> None:
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    remote = RemoteRecorder(inference)
    inference.start()
    try:
        inference.use_remote(Endpoint(served.url), "no-such-model")
        qtbot.waitUntil(lambda: bool(remote.failed), timeout=TIMEOUT_MS)
        assert "does not serve the model 'no-such-model'" in remote.failed[0]
        inference.use_remote(Endpoint(served.url), served.model)
        qtbot.waitUntil(lambda: bool(remote.connected), timeout=TIMEOUT_MS)
        backend = remote.connected[0]
        assert isinstance(backend, RemoteBackend) and backend.model == served.model
        inference.generate(1, HELLO, SamplingSettings(max_tokens=12, seed=4), top_n=3)
        qtbot.waitUntil(lambda: recorder.ended(1), timeout=TIMEOUT_MS)
        done = recorder.done[1]
        assert "".join(text for text, _ in recorder.chunks_of(1)) == done.text
        records = [r for rid, batch in recorder.token_data if rid == 1 for r in batch]
        assert len(records) == done.stats.completion_tokens
        assert all(len(r.top) == 3 and r.logprob < 0 for r in records)
        assert b"".join(r.piece for r in records).decode() == done.text
        assert done.stats.ttft_ms > 0 and done.stats.decode_tps > 0
        # Stop: the reply ends cancelled, quickly.
        inference.generate(2, (Message("user", "Tell a very long story."),), None)
        qtbot.waitUntil(lambda: bool(recorder.chunks_of(2)), timeout=TIMEOUT_MS)
        inference.cancel(2)
        qtbot.waitUntil(lambda: recorder.ended(2), timeout=5_000)
        assert recorder.done[2].stats.stop_reason is StopReason.CANCELLED
        inference.explore(3, HELLO)
        qtbot.waitUntil(lambda: bool(remote.explore_failed), timeout=TIMEOUT_MS)
        assert "not available from this server" in remote.explore_failed[0]
    finally:
        stop_and_check(inference)
