"""The token tap: a local reply's batches reach the GUI thread straight from the engine
host, all before the reply's end; with real pipes, the real llama.cpp and SmolLM2-135M."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Slot
from pytestqt.qtbot import QtBot

from app.core.host.protocol import TokenBatch
from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, make_record
from app.workers.inference_thread import InferenceThread
from app.workers.token_tap import TokenTap

pytestmark = [pytest.mark.qt_log_level_fail("WARNING")]

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)
COUNT = (Message("user", "Count from 1 to 300, one number per line."),)
LONG = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=160)
TIMEOUT_MS = 60_000


def record(token_id: int) -> TokenRecord:
    return make_record(token_id, b"x", -0.5)


def test_batches_are_handed_on_in_order_and_an_ended_tap_closes(qtbot: QtBot) -> None:
    got: list[tuple[int, str, object]] = []
    tap = TokenTap(lambda *batch: got.append(batch))
    reader, writer = multiprocessing.Pipe(duplex=False)
    # Handed over from another thread, as the inference worker does when a host starts.
    handing = threading.Thread(target=tap.hand_over, args=(reader,))
    handing.start()
    handing.join()
    writer.send((7, TokenBatch("ab", (record(1), record(2)))))
    writer.send((7, TokenBatch("c", (record(3),))))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=5_000)
    assert [(tag, text) for tag, text, _ in got] == [(7, "ab"), (7, "c")]
    assert [r.token_id for _, _, records in got for r in records] == [1, 2, 3]  # type: ignore[attr-defined]
    assert tap.open_taps == 1
    writer.send((8, TokenBatch("d", (record(4),))))
    writer.close()  # the host ended: what it sent is still read, then the tap closes
    qtbot.waitUntil(lambda: tap.open_taps == 0, timeout=5_000)
    assert [tag for tag, _, _ in got] == [7, 7, 8]
    assert reader.closed


def test_a_tap_handed_over_after_close_is_closed(qtbot: QtBot) -> None:
    tap = TokenTap(lambda *batch: None)
    tap.close()
    reader, writer = multiprocessing.Pipe(duplex=False)
    tap.hand_over(reader)
    qtbot.waitUntil(lambda: reader.closed, timeout=5_000)
    assert tap.open_taps == 0
    writer.close()


class Order(QObject):
    """Each reply's token count when its end arrives, and the threads `tokens` came from."""

    def __init__(self, inference: InferenceThread) -> None:
        super().__init__()
        self.records: dict[int, int] = {}
        self.at_end: dict[int, int] = {}
        self.done: dict[int, GenerationDone] = {}
        self.failures: dict[int, str] = {}
        self.emitting_threads: set[str] = set()
        self.loaded = False
        worker = inference.worker
        worker.loaded.connect(self.on_loaded)
        worker.tokens.connect(self.on_tokens)
        worker.tokens.connect(self.on_emit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)

    def on_emit(self, *_batch: object) -> None:  # runs on the thread that emitted
        self.emitting_threads.add(threading.current_thread().name)

    @Slot(object)
    def on_loaded(self, _model: object) -> None:
        self.loaded = True

    @Slot(int, str, object)
    def on_tokens(self, request_id: int, _text: str, records: object) -> None:
        assert isinstance(records, tuple)
        self.records[request_id] = self.records.get(request_id, 0) + len(records)

    @Slot(int, object)
    def on_finished(self, request_id: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.at_end[request_id] = self.records.get(request_id, 0)
        self.done[request_id] = done

    @Slot(int, str)
    def on_failed(self, request_id: int, message: str) -> None:
        self.at_end[request_id] = self.records.get(request_id, 0)
        self.failures[request_id] = message


def started(qtbot: QtBot, model: Path) -> tuple[InferenceThread, Order]:
    inference = InferenceThread(flush_interval_s=0.01)  # many small batches
    order = Order(inference)
    inference.start()
    inference.load(model, OPTIONS)
    qtbot.waitUntil(lambda: order.loaded, timeout=TIMEOUT_MS)
    return inference, order


def test_a_local_reply_s_tokens_come_on_the_gui_thread_all_before_its_end(
    qtbot: QtBot, starter_model: Path
) -> None:
    inference, order = started(qtbot, starter_model)
    try:
        for request_id in (1, 2):
            inference.generate(request_id, COUNT, LONG)
        qtbot.waitUntil(lambda: len(order.done) == 2, timeout=TIMEOUT_MS)
        for request_id in (1, 2):
            tokens = order.done[request_id].stats.completion_tokens
            assert tokens > 50
            assert order.at_end[request_id] == tokens  # every batch before the end
        # The worker's thread never carried a batch: the tap emitted them all here.
        assert order.emitting_threads == {threading.main_thread().name}
        assert inference.tap.open_taps == 1
    finally:
        assert inference.stop()
    assert inference.tap.open_taps == 0


def test_tokens_decoded_before_the_host_dies_arrive_before_the_failure(
    qtbot: QtBot, starter_model: Path
) -> None:
    inference, order = started(qtbot, starter_model)
    try:
        inference.generate(1, COUNT, LONG.with_changes(max_tokens=900))
        qtbot.waitUntil(lambda: order.records.get(1, 0) > 20, timeout=TIMEOUT_MS)
        pid = inference.worker.host_pid
        assert pid is not None
        os.kill(pid, signal.SIGABRT)  # how a llama.cpp abort ends the host
        qtbot.waitUntil(lambda: 1 in order.failures, timeout=TIMEOUT_MS)
        assert order.at_end[1] == order.records[1] > 20  # nothing came after the failure
        qtbot.waitUntil(lambda: inference.tap.open_taps == 0, timeout=TIMEOUT_MS)
        # A fresh host brings a fresh tap, and replies stream through it.
        order.loaded = False
        inference.load(starter_model, OPTIONS)
        qtbot.waitUntil(lambda: order.loaded, timeout=TIMEOUT_MS)
        inference.generate(2, COUNT, LONG.with_changes(max_tokens=40))
        qtbot.waitUntil(lambda: 2 in order.done, timeout=TIMEOUT_MS)
        assert order.at_end[2] == order.done[2].stats.completion_tokens > 0
        assert inference.tap.open_taps == 1
    finally:
        assert inference.stop()
