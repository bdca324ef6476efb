"""One-shot background jobs: the result or the failure arrives on the GUI thread."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QObject, QThread, Slot
from pytestqt.qtbot import QtBot

from app.core.errors import ModelFileError
from app.workers.background import BackgroundJob

pytestmark = pytest.mark.qt_log_level_fail("WARNING")
TIMEOUT_MS = 10_000


class Outcome(QObject):
    """Records a job's signals and the thread they arrived on."""

    def __init__(self, job: BackgroundJob) -> None:
        super().__init__()
        self.results: list[object] = []
        self.failures: list[str] = []
        self.finished = 0
        self.threads: list[QThread] = []
        job.succeeded.connect(self.on_succeeded)
        job.failed.connect(self.on_failed)
        job.finished.connect(self.on_finished)

    @Slot(object)
    def on_succeeded(self, result: object) -> None:
        self.threads.append(QThread.currentThread())
        self.results.append(result)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.threads.append(QThread.currentThread())
        self.failures.append(message)

    @Slot()
    def on_finished(self) -> None:
        self.finished += 1


def run(qtbot: QtBot, function: object) -> tuple[BackgroundJob, Outcome]:
    job = BackgroundJob(function, "test-job")  # type: ignore[arg-type]
    outcome = Outcome(job)
    job.start()
    qtbot.waitUntil(lambda: outcome.finished == 1, timeout=TIMEOUT_MS)
    assert not job.is_running
    return job, outcome


def test_the_result_arrives_on_the_gui_thread(qtbot: QtBot) -> None:
    ran_on: list[threading.Thread] = []

    def work() -> int:
        ran_on.append(threading.current_thread())
        return 42

    _, outcome = run(qtbot, work)
    assert outcome.results == [42] and not outcome.failures
    assert ran_on[0] is not threading.main_thread()
    assert outcome.threads == [QThread.currentThread()]


def test_a_hearth_error_becomes_its_message(qtbot: QtBot) -> None:
    def work() -> None:
        raise ModelFileError("broken.gguf is not a GGUF file.")

    _, outcome = run(qtbot, work)
    assert outcome.failures == ["broken.gguf is not a GGUF file."]
    assert not outcome.results


def test_an_unexpected_error_is_logged_and_reported(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    def work() -> None:
        raise RuntimeError("boom")

    _, outcome = run(qtbot, work)
    assert outcome.failures[0].startswith("Unexpected error: RuntimeError: boom")
    assert "unexpected error in test-job" in caplog.text


def test_wait_joins_a_running_job(qtbot: QtBot) -> None:
    release = threading.Event()
    job = BackgroundJob(release.wait, "test-job")
    job.start()
    assert job.is_running
    assert not job.wait(10)
    release.set()
    assert job.wait(TIMEOUT_MS)
    assert not job.is_running


def test_progress_reports_arrive_in_order_on_the_gui_thread(qtbot: QtBot) -> None:
    seen: list[tuple[object, bool]] = []
    gui_thread = QThread.currentThread()

    def work(report: object) -> str:
        for step in range(5):
            report(step)  # type: ignore[operator]
        return "done"

    job = BackgroundJob.with_progress(work, "test-progress-job")  # type: ignore[arg-type]
    job.progress.connect(lambda value: seen.append((value, QThread.currentThread() is gui_thread)))
    outcome = Outcome(job)
    job.start()
    qtbot.waitUntil(lambda: outcome.finished == 1, timeout=TIMEOUT_MS)
    assert seen == [(step, True) for step in range(5)]
    assert outcome.results == ["done"]
