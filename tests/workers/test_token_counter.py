"""The token counter on its own thread, with the real SmolLM2-135M vocabulary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.inference.tokenizer import VocabTokenizer
from app.workers.inference_thread import InferenceThread
from app.workers.token_counter import TokenCounter, TokenCountWorker, _LatestRequest

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

TIMEOUT_MS = 60_000
N_CTX = 512
HISTORY = (
    Message("system", "Be brief."),
    Message("user", "What is a lighthouse?"),
    Message("assistant", "A tower with a light that guides ships."),
)


class Recorder(QObject):
    """Receives the counter's signals on the GUI thread (via @Slot methods)."""

    def __init__(self, counter: TokenCounter) -> None:
        super().__init__()
        self.counted: list[tuple[int, int, int, int, object]] = []
        self.unavailable: list[tuple[int, str]] = []
        self.ready: list[str] = []
        self.failed: list[tuple[str, str]] = []
        counter.counted.connect(self.on_counted)
        counter.unavailable.connect(self.on_unavailable)
        counter.modelReady.connect(self.on_ready)
        counter.modelFailed.connect(self.on_failed)

    @Slot(int, int, int, int, object)
    def on_counted(
        self, request_id: int, draft: int, prompt: int, limit: int, dropped: object
    ) -> None:
        self.counted.append((request_id, draft, prompt, limit, dropped))

    @Slot(int, str)
    def on_unavailable(self, request_id: int, reason: str) -> None:
        self.unavailable.append((request_id, reason))

    @Slot(str)
    def on_ready(self, path: str) -> None:
        self.ready.append(path)

    @Slot(str, str)
    def on_failed(self, path: str, reason: str) -> None:
        self.failed.append((path, reason))


class InferenceRecorder(QObject):
    """Collects the inference worker's streamed text and finished replies."""

    def __init__(self, inference: InferenceThread) -> None:
        super().__init__()
        self.loaded = False
        self.chunks = 0
        self.done: list[GenerationDone] = []
        inference.worker.loaded.connect(self.on_loaded)
        inference.worker.tokens.connect(self.on_tokens)
        inference.worker.finished.connect(self.on_finished)

    @Slot(object)
    def on_loaded(self, _model: object) -> None:
        self.loaded = True

    @Slot(int, str, object)
    def on_tokens(self, _rid: int, _text: str, _records: object) -> None:
        self.chunks += 1

    @Slot(int, object)
    def on_finished(self, _rid: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.done.append(done)


MakeCounter = Callable[[], tuple[TokenCounter, Recorder]]


@pytest.fixture
def make_counter() -> Iterator[MakeCounter]:
    made: list[TokenCounter] = []

    def make() -> tuple[TokenCounter, Recorder]:
        counter = TokenCounter()
        recorder = Recorder(counter)
        counter.start()
        made.append(counter)
        return counter, recorder

    yield make
    for counter in made:
        assert counter.stop()
        assert counter.qthread.isFinished()
        assert counter.worker.is_closed


@pytest.fixture(scope="module")
def reference(starter_model: Path) -> Iterator[VocabTokenizer]:
    made = VocabTokenizer(starter_model)
    yield made
    made.close()


def load(qtbot: QtBot, counter: TokenCounter, recorder: Recorder, model: Path) -> None:
    counter.set_model(str(model))
    qtbot.waitUntil(lambda: recorder.ready == [str(model)], timeout=TIMEOUT_MS)


def test_counts_the_draft_and_the_prompt(
    qtbot: QtBot, make_counter: MakeCounter, starter_model: Path, reference: VocabTokenizer
) -> None:
    counter, recorder = make_counter()
    load(qtbot, counter, recorder, starter_model)
    draft = "How tall is the lighthouse on the hill? 🌊"
    counter.count(1, draft, HISTORY, 64, N_CTX)
    qtbot.waitUntil(lambda: len(recorder.counted) == 1, timeout=TIMEOUT_MS)
    expected = reference.count_prompt([*HISTORY, Message("user", draft)], 64, N_CTX)
    assert recorder.counted == [(1, reference.count(draft), expected.prompt_tokens, N_CTX, ())]

    counter.count(2, "   ", HISTORY, None, 0)  # blank draft: history only; the model's context
    qtbot.waitUntil(lambda: len(recorder.counted) == 2, timeout=TIMEOUT_MS)
    history_only = reference.count_prompt(list(HISTORY), None, reference.info.context_length)
    rid, draft_tokens, prompt, limit, dropped = recorder.counted[1]
    assert (rid, prompt, limit, dropped) == (
        2,
        history_only.prompt_tokens,
        reference.info.context_length,
        (),
    )
    assert draft_tokens == reference.count("   ")


def test_over_the_limit_reports_what_would_be_dropped(
    qtbot: QtBot, make_counter: MakeCounter, starter_model: Path, reference: VocabTokenizer
) -> None:
    counter, recorder = make_counter()
    load(qtbot, counter, recorder, starter_model)
    long_history = [Message("system", "Be brief.")]
    for i in range(10):
        long_history += [Message("user", "word " * 30), Message("assistant", f"reply {i} " * 15)]
    counter.count(5, "and now?", long_history, 128, N_CTX)
    qtbot.waitUntil(lambda: len(recorder.counted) == 1, timeout=TIMEOUT_MS)
    _, _, prompt, limit, dropped = recorder.counted[0]
    expected = reference.count_prompt([*long_history, Message("user", "and now?")], 128, N_CTX)
    assert prompt == expected.prompt_tokens > limit
    assert dropped == expected.dropped and dropped and 0 not in dropped  # type: ignore[operator]

    counter.count(6, "word " * 700, (), 128, N_CTX)  # the draft alone is too long
    qtbot.waitUntil(lambda: len(recorder.counted) == 2, timeout=TIMEOUT_MS)
    assert recorder.counted[1][4] is None


def test_only_the_newest_request_is_answered(
    qtbot: QtBot, make_counter: MakeCounter, starter_model: Path
) -> None:
    counter, recorder = make_counter()
    load(qtbot, counter, recorder, starter_model)
    draft = ""
    for request_id in range(1, 31):
        draft += "typing "
        counter.count(request_id, draft, HISTORY, 64, N_CTX)
    assert counter.latest_request == 30
    qtbot.waitUntil(lambda: len(recorder.counted) >= 1, timeout=TIMEOUT_MS)
    counter.count(31, "done", HISTORY, 64, N_CTX)  # a queue marker: 1-30 are all behind us
    qtbot.waitUntil(lambda: any(c[0] == 31 for c in recorder.counted), timeout=TIMEOUT_MS)
    assert [c[0] for c in recorder.counted] == [30, 31]
    assert counter.worker.requests_counted < 31  # stale requests were skipped, not counted


def test_the_worker_skips_requests_a_newer_one_overtook(starter_model: Path) -> None:
    latest = _LatestRequest()
    worker = TokenCountWorker(latest)  # driven directly on this thread
    answers: list[int] = []
    worker.counted.connect(lambda rid, *_: answers.append(rid))
    worker.set_model(str(starter_model))
    latest.set(5)
    worker.count(4, "stale", (), 16, N_CTX)
    worker.count(5, "fresh", (), 16, N_CTX)
    assert answers == [5] and worker.requests_counted == 1
    worker.shutdown()
    assert worker.is_closed


def test_no_model_and_bad_models_are_reported(
    qtbot: QtBot, make_counter: MakeCounter, tmp_path: Path
) -> None:
    counter, recorder = make_counter()
    counter.count(1, "hello", (), 16, N_CTX)
    qtbot.waitUntil(lambda: len(recorder.unavailable) == 1, timeout=TIMEOUT_MS)
    assert recorder.unavailable[0][0] == 1 and "No model" in recorder.unavailable[0][1]

    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a model" * 100)
    counter.set_model(str(bogus))
    qtbot.waitUntil(lambda: len(recorder.failed) == 1, timeout=TIMEOUT_MS)
    assert recorder.failed[0][0] == str(bogus) and "broken.gguf" in recorder.failed[0][1]
    assert recorder.counted == []


def test_counting_answers_while_the_inference_worker_generates(
    qtbot: QtBot, make_counter: MakeCounter, starter_model: Path
) -> None:
    counter, recorder = make_counter()
    load(qtbot, counter, recorder, starter_model)
    inference = InferenceThread(check_memory=False)
    streamed = InferenceRecorder(inference)
    inference.start()
    try:
        inference.load(starter_model, LoadOptions(n_ctx=2048, n_threads=1))
        qtbot.waitUntil(lambda: streamed.loaded, timeout=TIMEOUT_MS)
        settings = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=1500)
        inference.generate(
            1, (Message("user", "Count from 1 to 1000, one number per line."),), settings
        )
        qtbot.waitUntil(lambda: streamed.chunks >= 2, timeout=TIMEOUT_MS)
        counter.count(1, "Is the counter still answering?", HISTORY, 64, N_CTX)
        qtbot.waitUntil(lambda: len(recorder.counted) == 1, timeout=TIMEOUT_MS)
        assert streamed.done == []  # the reply is still being generated
    finally:
        inference.cancel(1)
        assert inference.stop()


def test_stop_is_ordered_and_idempotent(
    qtbot: QtBot, make_counter: MakeCounter, starter_model: Path
) -> None:
    counter, recorder = make_counter()
    load(qtbot, counter, recorder, starter_model)
    for request_id in range(1, 50):
        counter.count(request_id, "x " * request_id, HISTORY, 64, N_CTX)
    assert counter.stop()
    assert counter.stop()
    assert not counter.is_running and counter.worker.is_closed
    counter.count(99, "after stop", HISTORY, 64, N_CTX)  # ignored
    assert all(c[0] != 99 for c in recorder.counted)
