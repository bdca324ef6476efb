"""The download queue and the quantize job: long model work off the GUI thread, with
progress, pause and cancel.

Downloads run one at a time, in the order they were queued, each on a `BackgroundJob`
thread of its own; the core does the transfer (`app.core.models.download`) and this module only
schedules it and turns its outcome into signals. A paused item keeps its partial file and
continues with a Range request when resumed, in this session or the next
(`DownloadQueue.restore` lists what the last session left).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QObject, Signal, Slot

from app.core.models.download import download_model_file, download_option
from app.core.models.download_files import discard_download, unfinished_downloads
from app.core.models.download_types import (
    DownloadCancelled,
    DownloadControl,
    DownloadPaused,
    DownloadProgress,
    DownloadRequest,
)
from app.core.models.hub import QuantOption, RepoFiles
from app.core.models.quantize import QuantizeCancelled, QuantizeControl, QuantizePlan, run_quantize
from app.core.paths import AppPaths
from app.workers.background import BackgroundJob

log = logging.getLogger(__name__)

ItemState = Literal["queued", "running", "paused", "done", "failed", "cancelled"]
Transfer = Callable[[Callable[[DownloadProgress], None], DownloadControl], Path]


@dataclass
class DownloadItem:
    """One entry of the queue: a model file (or all shards of a split model)."""

    key: int
    title: str
    total_bytes: int
    transfer: Transfer = field(repr=False)
    discard: Callable[[], None] = field(repr=False)
    state: ItemState = "queued"
    done_bytes: int = 0
    message: str = ""
    path: Path | None = None
    control: DownloadControl | None = field(default=None, repr=False)


class DownloadQueue(QObject):
    """Downloads one item at a time; items can be paused, resumed and cancelled.

    Signals:
        changed(int): Item `key`'s state or message changed (see `item`).
        progressed(int, object): Item `key` reported a `DownloadProgress`.
        completed(int, object): Item `key` is verified and in place at the given `Path`.
    """

    changed = Signal(int)
    progressed = Signal(int, object)
    completed = Signal(int, object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self._keys = itertools.count(1)
        self._items: dict[int, DownloadItem] = {}
        self._job: BackgroundJob | None = None
        self._running: DownloadItem | None = None
        self._closed = False

    # ----- what is in it -----

    def items(self) -> list[DownloadItem]:
        """Every item, oldest first."""
        return list(self._items.values())

    def item(self, key: int) -> DownloadItem:
        """One item by key."""
        return self._items[key]

    @property
    def is_busy(self) -> bool:
        """A download is running."""
        return self._running is not None

    # ----- adding -----

    def add_option(
        self,
        repo: RepoFiles,
        option: QuantOption,
        *,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> int:
        """Queue a quant option of a Hub repo (all its shards); returns the item's key."""
        paths = self._paths

        def transfer(report: Callable[[DownloadProgress], None], control: DownloadControl) -> Path:
            return download_option(
                paths,
                repo,
                option,
                endpoint=endpoint,
                token=token,
                progress=report,
                control=control,
            )

        def discard() -> None:
            for hub_file in option.files:
                discard_download(
                    paths,
                    _request(repo, hub_file.path, hub_file.size, hub_file.sha256, endpoint, token),
                )

        title = f"{repo.repo_id} · {option.label}"
        return self._add(title, option.size_bytes, transfer, discard)

    def add_request(self, request: DownloadRequest, *, paused: bool = False) -> int:
        """Queue one file (e.g. a download the last session left unfinished)."""
        paths = self._paths

        def transfer(report: Callable[[DownloadProgress], None], control: DownloadControl) -> Path:
            return download_model_file(paths, request, progress=report, control=control)

        def discard() -> None:
            discard_download(paths, request)

        title = f"{request.repo_id} · {request.filename}"
        return self._add(title, request.size, transfer, discard, paused=paused)

    def restore(self) -> list[int]:
        """Add the downloads the last session left unfinished, paused; returns their keys."""
        keys = []
        for request in unfinished_downloads(self._paths):
            keys.append(self.add_request(request, paused=True))
        return keys

    def _add(
        self,
        title: str,
        total: int,
        transfer: Transfer,
        discard: Callable[[], None],
        *,
        paused: bool = False,
    ) -> int:
        key = next(self._keys)
        item = DownloadItem(key, title, total, transfer, discard)
        if paused:
            item.state = "paused"
            item.message = "Paused; the part already fetched is kept."
        self._items[key] = item
        self.changed.emit(key)
        self._start_next()
        return key

    # ----- controlling -----

    def pause(self, key: int) -> None:
        """Pause an item: a running one stops soon and keeps its partial file."""
        item = self._items[key]
        if item.state == "running" and item.control is not None:
            item.control.pause()
        elif item.state == "queued":
            self._set(item, "paused", "Paused.")

    def resume(self, key: int) -> None:
        """Queue a paused or failed item again; it continues where it stopped."""
        item = self._items[key]
        if item.state in ("paused", "failed"):
            self._set(item, "queued", "")
            self._start_next()

    def cancel(self, key: int) -> None:
        """Cancel an item and delete its partial file."""
        item = self._items[key]
        if item.state == "running" and item.control is not None:
            item.control.cancel()
            return
        if item.state in ("queued", "paused", "failed"):
            try:
                item.discard()
            except OSError as exc:
                log.warning("could not delete the partial download of %s: %s", item.title, exc)
            self._set(item, "cancelled", "Cancelled.")

    def remove_finished(self) -> None:
        """Drop done, cancelled and failed items from the list."""
        for key, item in list(self._items.items()):
            if item.state in ("done", "cancelled"):
                del self._items[key]
                self.changed.emit(key)

    def shutdown(self, timeout_ms: int) -> bool:
        """Pause the running download (its partial file stays for next time) and wait."""
        self._closed = True
        if self._running is not None and self._running.control is not None:
            self._running.control.pause()
        if self._job is not None:
            return self._job.wait(timeout_ms)
        return True

    # ----- running -----

    def _start_next(self) -> None:
        if self._running is not None or self._closed:
            return
        item = next((i for i in self._items.values() if i.state == "queued"), None)
        if item is None:
            return
        control = DownloadControl()
        item.control = control
        self._running = item
        self._set(item, "running", "Starting…")
        transfer = item.transfer

        def work(report: Callable[[object], None]) -> tuple[str, Path | None]:
            try:
                return "done", transfer(report, control)
            except DownloadPaused:
                return "paused", None
            except DownloadCancelled:
                return "cancelled", None

        job = BackgroundJob.with_progress(work, f"hearth-download-{item.key}", self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self._job = job
        job.start()

    @Slot(object)
    def _on_progress(self, progress: object) -> None:
        item = self._running
        if item is None or not isinstance(progress, DownloadProgress):
            return
        item.done_bytes = progress.done_bytes
        self.progressed.emit(item.key, progress)

    @Slot(object)
    def _on_succeeded(self, outcome: object) -> None:
        item = self._running
        if item is None or not isinstance(outcome, tuple):
            return
        state, path = outcome
        if state == "done":
            item.path = path
            item.done_bytes = item.total_bytes
            self._set(item, "done", "Verified and added to your models.")
            self.completed.emit(item.key, path)
        elif state == "paused":
            self._set(item, "paused", "Paused; the part already fetched is kept.")
        else:
            self._set(item, "cancelled", "Cancelled; the partial file was deleted.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        item = self._running
        if item is not None:
            self._set(item, "failed", message)

    @Slot()
    def _on_finished(self) -> None:
        job = self._job
        self._job = None
        self._running = None
        if job is not None:
            job.deleteLater()
        self._start_next()

    def _set(self, item: DownloadItem, state: ItemState, message: str) -> None:
        item.state = state
        item.message = message
        if state != "running":
            item.control = None
        self.changed.emit(item.key)


def _request(
    repo: RepoFiles,
    filename: str,
    size: int,
    sha256: str | None,
    endpoint: str | None,
    token: str | None,
) -> DownloadRequest:
    return DownloadRequest(
        repo_id=repo.repo_id,
        filename=filename,
        revision=repo.revision,
        size=size,
        sha256=sha256,
        endpoint=endpoint,
        token=token,
    )


class QuantizeJob(QObject):
    """Runs one planned quantization in a child process, with progress and cancel.

    Signals:
        progressed(object): A `QuantizeProgress` (tensor i of n).
        succeeded(object): The `QuantizeResult`.
        failed(str): Why it failed.
        cancelled(): It was cancelled; no partial file is left.
        finished(): The job has ended (after one of the above).
    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, plan: QuantizePlan, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.plan = plan
        self._control = QuantizeControl()

        def work(report: Callable[[object], None]) -> object:
            try:
                return run_quantize(plan, progress=report, control=self._control)
            except QuantizeCancelled:
                return None

        self._job = BackgroundJob.with_progress(work, "hearth-quantize", self)
        self._job.progress.connect(self.progressed)
        self._job.succeeded.connect(self._on_succeeded)
        self._job.failed.connect(self.failed)
        self._job.finished.connect(self.finished)

    def start(self) -> None:
        """Start quantizing."""
        self._job.start()

    def cancel(self) -> None:
        """Stop the child process and remove the partial output."""
        self._control.cancel()

    @property
    def is_running(self) -> bool:
        """Started and not yet ended."""
        return self._job.is_running

    def wait(self, timeout_ms: int) -> bool:
        """Wait for the job's thread to end."""
        return self._job.wait(timeout_ms)

    @Slot(object)
    def _on_succeeded(self, result: object) -> None:
        if result is None:
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)
