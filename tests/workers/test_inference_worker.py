"""The inference worker on its own thread, with the real llama.cpp and SmolLM2-135M."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.events import GenerationDone, PrefillStarted, StopReason
from app.core.inference.gpu_fallback import OffloadOutcome, Placement
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TokenRecord
from app.workers.inference import (
    BUSY_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_INTERVAL_S,
    InferenceWorker,
)
from app.workers.inference_thread import InferenceThread
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf
from tests.simulated_gpu import FullGpu

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

# One thread: llama.cpp's spinning thread pool slows down badly when other processes
# compete for the cores (a busy 2-core CI machine); one thread degrades gracefully.
OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)
GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=24)
LONG = GREEDY.with_changes(max_tokens=400)
HELLO = (Message("user", "Say hello in one short sentence."),)
COUNT = (Message("user", "Count from 1 to 300, one number per line."),)
TIMEOUT_MS = 60_000


class Recorder(QObject):
    """Receives every worker signal on the GUI thread (queued, via @Slot methods)."""

    def __init__(self, worker: InferenceWorker) -> None:
        super().__init__()
        self.progress: list[float] = []
        self.outcomes: list[OffloadOutcome] = []
        self.loaded: list[LoadedModel] = []
        self.load_failed: list[str] = []
        self.load_cancelled = 0
        self.prefill: list[tuple[int, PrefillStarted]] = []
        self.chunks: list[tuple[int, str, int]] = []
        self.chunk_times: list[float] = []
        self.done: dict[int, GenerationDone] = {}
        self.done_times: dict[int, float] = {}
        self.failures: dict[int, str] = {}
        self.token_data: list[tuple[int, tuple[TokenRecord, ...]]] = []
        worker.loadProgress.connect(self.on_progress)
        worker.offloadOutcome.connect(self.on_outcome)
        worker.loaded.connect(self.on_loaded)
        worker.loadFailed.connect(self.on_load_failed)
        worker.loadCancelled.connect(self.on_load_cancelled)
        worker.prefillStarted.connect(self.on_prefill)
        worker.tokens.connect(self.on_tokens)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)

    @Slot(float)
    def on_progress(self, fraction: float) -> None:
        self.progress.append(fraction)

    @Slot(object)
    def on_outcome(self, outcome: object) -> None:
        assert isinstance(outcome, OffloadOutcome)
        assert len(self.outcomes) == len(self.loaded)  # each outcome before its model
        self.outcomes.append(outcome)

    @Slot(object)
    def on_loaded(self, model: object) -> None:
        assert isinstance(model, LoadedModel)
        self.loaded.append(model)

    @Slot(str)
    def on_load_failed(self, message: str) -> None:
        self.load_failed.append(message)

    @Slot()
    def on_load_cancelled(self) -> None:
        self.load_cancelled += 1

    @Slot(int, object)
    def on_prefill(self, request_id: int, event: object) -> None:
        assert isinstance(event, PrefillStarted)
        self.prefill.append((request_id, event))

    @Slot(int, str, object)
    def on_tokens(self, request_id: int, text: str, records: object) -> None:
        assert isinstance(records, tuple)
        self.token_data.append((request_id, records))
        self.chunks.append((request_id, text, len(records)))
        self.chunk_times.append(time.monotonic())

    @Slot(int, object)
    def on_finished(self, request_id: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.done[request_id] = done
        self.done_times[request_id] = time.monotonic()

    @Slot(int, str)
    def on_failed(self, request_id: int, message: str) -> None:
        self.failures[request_id] = message

    def chunks_of(self, request_id: int) -> list[tuple[str, int]]:
        return [(text, count) for rid, text, count in self.chunks if rid == request_id]

    def ended(self, request_id: int) -> bool:
        return request_id in self.done or request_id in self.failures


def stop_and_check(inference: InferenceThread) -> None:
    assert inference.stop()
    assert inference.qthread.isFinished()
    assert inference.worker.is_closed


def start_loaded(
    qtbot: QtBot, model: Path, flush_interval_s: float | None = None
) -> tuple[InferenceThread, Recorder]:
    inference = InferenceThread(flush_interval_s=flush_interval_s)
    recorder = Recorder(inference.worker)
    inference.start()
    inference.load(model, OPTIONS)
    qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.load_failed), timeout=TIMEOUT_MS)
    assert recorder.loaded, recorder.load_failed
    return inference, recorder


@pytest.fixture
def running(qtbot: QtBot, starter_model: Path) -> Iterator[tuple[InferenceThread, Recorder]]:
    """A started worker with the starter model loaded (loading takes well under a second)."""
    inference, recorder = start_loaded(qtbot, starter_model)
    try:
        yield inference, recorder
    finally:
        stop_and_check(inference)


def test_load_reports_progress_and_the_loaded_model(qtbot: QtBot, starter_model: Path) -> None:
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    inference.start()
    try:
        inference.load(starter_model, OPTIONS)
        qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.load_failed), timeout=TIMEOUT_MS)
        assert not recorder.load_failed
        model = recorder.loaded[0]
        assert model.info.path == starter_model
        assert model.n_ctx == 1024
        assert model.n_threads == 1
        assert recorder.progress and recorder.progress[-1] == pytest.approx(1.0)
        assert recorder.progress == sorted(recorder.progress)
        [outcome] = recorder.outcomes
        assert outcome.loaded == model
        assert outcome.where == Placement(0, model.info.n_layer + 1, 1)
        assert not outcome.worth_telling  # a CPU-only build used as such
    finally:
        stop_and_check(inference)


def test_a_gpu_out_of_memory_is_retried_with_fewer_layers_and_reported(
    qtbot: QtBot, tmp_path: Path
) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", n_layer=8, chat_template=CHATML_TEMPLATE)
    gpu = FullGpu(fits=4)
    inference = InferenceThread(gpu_stand_in=gpu.stand_in())
    recorder = Recorder(inference.worker)
    inference.start()
    try:
        inference.load(model, OPTIONS)
        qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.load_failed), timeout=TIMEOUT_MS)
        assert not recorder.load_failed
        assert gpu.asked == [9, 4]  # all 9 planned to fit; the GPU said otherwise
        [outcome] = recorder.outcomes
        assert outcome.fell_back and outcome.worth_telling
        assert (
            outcome.message
            == "GPU out of memory at 9 layers; loaded with 4 of 9 layers on the GPU."
        )
        assert outcome.where.text == "GPU 4/9 + CPU"
        assert outcome.loaded == recorder.loaded[0]
        assert recorder.progress[-1] == pytest.approx(1.0)
        # the model really works
        inference.generate(1, HELLO, GREEDY.with_changes(max_tokens=4))
        qtbot.waitUntil(lambda: recorder.ended(1), timeout=TIMEOUT_MS)
        assert 1 in recorder.done
    finally:
        stop_and_check(inference)


def test_a_load_without_options_uses_the_saved_ones(
    qtbot: QtBot, starter_model: Path, tmp_path: Path
) -> None:
    saved = LoadOptions(n_ctx=512, n_threads=1, type_k="q8_0")
    settings = LoadOptionsStore(tmp_path / "config")
    settings.set(starter_model, saved)
    inference = InferenceThread(model_settings=settings)
    recorder = Recorder(inference.worker)
    inference.start()
    try:
        inference.load(starter_model)
        qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.load_failed), timeout=TIMEOUT_MS)
        assert not recorder.load_failed
        model = recorder.loaded[0]
        assert model.n_ctx == 512
        assert model.options is not None and model.options.type_k == "q8_0"
        inference.load(starter_model, OPTIONS)  # given options win
        qtbot.waitUntil(lambda: len(recorder.loaded) == 2, timeout=TIMEOUT_MS)
        assert recorder.loaded[1].n_ctx == 1024
    finally:
        stop_and_check(inference)


def test_loading_a_non_gguf_file_fails_with_its_name(qtbot: QtBot, tmp_path: Path) -> None:
    notes = tmp_path / "shopping-list.txt"
    notes.write_text("eggs, milk, bread\n" * 20)
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    inference.start()
    try:
        inference.load(notes)
        qtbot.waitUntil(lambda: bool(recorder.load_failed), timeout=TIMEOUT_MS)
        assert "shopping-list.txt" in recorder.load_failed[0]
        assert not recorder.loaded
        assert "Unexpected error" not in recorder.load_failed[0]
    finally:
        stop_and_check(inference)


def test_a_cancelled_load_reports_cancelled(qtbot: QtBot, starter_model: Path) -> None:
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    # The load is queued before the worker's thread runs, so the cancel surely comes
    # before the load starts (on a busy machine a started thread could finish the whole
    # load before the next line here ran: a stress run saw it).
    inference.worker.expect_load()
    inference._loadRequested.emit(str(starter_model), OPTIONS)
    inference.cancel_load()  # before the queued load even starts: still cancels it
    inference.start()
    try:
        qtbot.waitUntil(
            lambda: bool(recorder.load_cancelled or recorder.loaded or recorder.load_failed),
            timeout=TIMEOUT_MS,
        )
        assert recorder.load_cancelled == 1
        assert not recorder.loaded
        # A later load is not affected by the earlier cancel.
        inference.load(starter_model, OPTIONS)
        qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.load_failed), timeout=TIMEOUT_MS)
        assert recorder.loaded
    finally:
        stop_and_check(inference)


def test_a_cancel_never_reaches_a_load_announced_after_it(starter_model: Path) -> None:
    """The interleaving a busy machine makes: the GUI sees a load cancelled and asks for the
    next one before the worker's thread has finished with the first. The slots run here,
    on this thread, in that order, so the order is certain."""
    worker = InferenceWorker()
    recorder = Recorder(worker)
    try:
        worker.expect_load()
        worker.cancel_load()
        worker.expect_load()  # announced after the cancel, before the first load runs
        worker.load(str(starter_model), OPTIONS)  # signals arrive directly: same thread
        assert recorder.load_cancelled == 1
        worker.load(str(starter_model), OPTIONS)
        assert recorder.load_cancelled == 1
        assert recorder.loaded and not recorder.load_failed
    finally:
        worker.shutdown()


def test_generating_without_a_model_fails_with_a_message(qtbot: QtBot) -> None:
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    inference.start()
    try:
        inference.generate(1, HELLO, GREEDY)
        qtbot.waitUntil(lambda: recorder.ended(1), timeout=TIMEOUT_MS)
        assert "No model is loaded" in recorder.failures[1]
    finally:
        stop_and_check(inference)


def test_reply_streams_tokens_that_add_up_to_the_reply(
    qtbot: QtBot, running: tuple[InferenceThread, Recorder]
) -> None:
    inference, recorder = running
    inference.generate(101, HELLO, SettingsHolder(GREEDY))
    qtbot.waitUntil(lambda: recorder.ended(101), timeout=TIMEOUT_MS)
    assert 101 not in recorder.failures
    done = recorder.done[101]
    chunks = recorder.chunks_of(101)
    assert done.text
    assert "".join(text for text, _ in chunks) + done.tail == done.text
    assert sum(count for _, count in chunks) == done.stats.completion_tokens
    assert 0 < len(chunks) <= done.stats.completion_tokens
    assert [rid for rid, _ in recorder.prefill].count(101) == 1
    assert recorder.prefill[-1][1].prompt_tokens == done.stats.prompt_tokens


def test_each_text_chunk_carries_the_records_of_its_tokens(
    qtbot: QtBot, running: tuple[InferenceThread, Recorder]
) -> None:
    inference, recorder = running
    holder = SettingsHolder(GREEDY.with_changes(max_tokens=12))
    inference.generate(111, HELLO, holder, 3)
    qtbot.waitUntil(lambda: recorder.ended(111), timeout=TIMEOUT_MS)
    done = recorder.done[111]
    batches = [records for rid, records in recorder.token_data if rid == 111]
    assert batches and all(batches)  # no signal without tokens
    pieces = b""
    text = ""
    for batch, (chunk, _) in zip(batches, recorder.chunks_of(111), strict=True):
        pieces += b"".join(r.piece for r in batch)
        text += chunk
        assert pieces.decode(errors="ignore").startswith(text)  # each chunk's own tokens
    records = [r for batch in batches for r in batch]
    assert tuple(r.token_id for r in records) == done.tokens
    assert all(len(r.top) == 3 and r.top[0].token_id == r.token_id for r in records)  # greedy
    assert all(r.logprob <= 0 and r.settings == holder.get() for r in records)
    assert b"".join(r.piece for r in records).decode() == done.text


def test_tokens_are_coalesced_by_time(qtbot: QtBot, starter_model: Path) -> None:
    # With a flush interval longer than the reply, the first token leaves at once and the
    # rest in one final flush, however fast or slow this machine is.
    inference, recorder = start_loaded(qtbot, starter_model, flush_interval_s=3600.0)
    try:
        inference.generate(1, HELLO, GREEDY)
        qtbot.waitUntil(lambda: recorder.ended(1), timeout=TIMEOUT_MS)
        done = recorder.done[1]
        chunks = recorder.chunks_of(1)
        assert done.stats.completion_tokens > 2
        assert len(chunks) == 2 < done.stats.completion_tokens
        assert chunks[0][1] == 1
        assert chunks[1][1] == done.stats.completion_tokens - 1
        assert "".join(text for text, _ in chunks) + done.tail == done.text
    finally:
        stop_and_check(inference)


def test_same_request_twice_gives_the_same_greedy_reply(
    qtbot: QtBot, running: tuple[InferenceThread, Recorder]
) -> None:
    inference, recorder = running
    inference.generate(201, HELLO, GREEDY)
    inference.generate(202, HELLO, GREEDY)  # queued behind the first
    qtbot.waitUntil(lambda: recorder.ended(201) and recorder.ended(202), timeout=TIMEOUT_MS)
    assert recorder.done[201].text == recorder.done[202].text
    assert recorder.done[202].stats.cached_tokens > 0  # the KV cache was reused


def test_cancel_mid_reply_stops_quickly(
    qtbot: QtBot, running: tuple[InferenceThread, Recorder]
) -> None:
    inference, recorder = running
    inference.generate(301, COUNT, LONG)
    qtbot.waitUntil(lambda: bool(recorder.chunks_of(301)), timeout=TIMEOUT_MS)
    cancelled_at = time.monotonic()
    inference.cancel(301)
    qtbot.waitUntil(lambda: recorder.ended(301), timeout=10_000)
    done = recorder.done[301]
    assert done.stats.stop_reason is StopReason.CANCELLED
    assert done.stats.completion_tokens < 400
    assert recorder.done_times[301] - cancelled_at < 5.0  # ~1 token; generous for busy CI
    assert "".join(text for text, _ in recorder.chunks_of(301)) + done.tail == done.text


def test_cancel_before_the_request_runs(
    qtbot: QtBot, running: tuple[InferenceThread, Recorder]
) -> None:
    inference, recorder = running
    inference.generate(401, COUNT, LONG)
    inference.cancel(401)  # the queued request has not started yet
    qtbot.waitUntil(lambda: recorder.ended(401), timeout=TIMEOUT_MS)
    done = recorder.done[401]
    assert done.stats.stop_reason is StopReason.CANCELLED
    assert done.stats.completion_tokens == 0
    assert not recorder.chunks_of(401)


def test_stop_mid_reply_ends_the_thread_promptly(qtbot: QtBot, starter_model: Path) -> None:
    inference = InferenceThread()
    recorder = Recorder(inference.worker)
    inference.start()
    inference.load(starter_model, OPTIONS)
    inference.generate(1, COUNT, LONG)
    qtbot.waitUntil(lambda: bool(recorder.chunks_of(1)), timeout=TIMEOUT_MS)
    started = time.monotonic()
    stop_and_check(inference)
    assert time.monotonic() - started < 10.0
    inference.generate(2, HELLO, GREEDY)  # after stop: ignored, nothing crashes
    assert not inference.is_running


def test_the_window_refreshes_less_often_while_llama_cpp_takes_every_core(
    qtbot: QtBot, starter_model: Path
) -> None:
    cpus = len(os.sched_getaffinity(0))
    inference, recorder = start_loaded(qtbot, starter_model)
    worker = inference.worker
    try:
        engine = worker._engine
        assert engine is not None and engine.loaded is not None
        expected = BUSY_FLUSH_INTERVAL_S if cpus <= 1 else DEFAULT_FLUSH_INTERVAL_S
        assert worker._flush_interval(engine) == expected  # 1 thread: a core is left over
        inference.load(starter_model, LoadOptions(n_ctx=1024, n_threads=cpus))
        # Wait for the signal, not on `engine.loaded`: the worker's thread clears and sets
        # it while the model loads again.
        qtbot.waitUntil(lambda: len(recorder.loaded) == 2, timeout=TIMEOUT_MS)
        assert recorder.loaded[-1].n_threads == cpus
        assert worker._flush_interval(engine) == BUSY_FLUSH_INTERVAL_S
        inference.generate(1, HELLO, GREEDY.with_changes(max_tokens=40))
        qtbot.waitUntil(lambda: recorder.ended(1), timeout=TIMEOUT_MS)
        stats = recorder.done[1].stats
        # Never more than one chunk per interval, plus the first token and the final flush.
        assert len(recorder.chunks_of(1)) <= 2 + stats.decode_ms / 1000 / BUSY_FLUSH_INTERVAL_S
    finally:
        stop_and_check(inference)
