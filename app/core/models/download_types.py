"""What a download is asked and what it reports or raises: the request, its progress (and
the meter that rate-limits it), the pause/cancel control, and the errors.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

from app.core.errors import HearthError

PROGRESS_INTERVAL_S = 0.1
SPEED_WINDOW_S = 5.0

Phase = Literal["checking", "downloading", "retrying", "verifying", "done"]
DiskFree = Callable[[Path], int]
"""Free bytes on the disk holding a folder (default: `shutil.disk_usage(...).free`)."""
PartOpener = Callable[[Path], BinaryIO]
"""Opens the `.part` file for appending (default: `open(path, "ab")`); tests inject a
writer that raises ENOSPC to simulate a disk filling up mid-download."""


class DownloadError(HearthError):
    """A download failed (base of the failures below)."""


class DiskFullError(DownloadError):
    """Not enough free disk space for the download."""

    def __init__(self, message: str, *, needed: int = 0, free: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.free = free


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not match the Hub's sha256 (or size); the file was deleted."""


class ConnectionDroppedError(DownloadError):
    """The server dropped the connection mid-file; the partial file is kept for resuming."""


class DownloadPaused(HearthError):
    """The download was paused; the partial file is kept. Not a failure."""


class DownloadCancelled(HearthError):
    """The download was cancelled and its partial file removed. Not a failure."""


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch from a Hub repo.

    Attributes:
        repo_id: "owner/name".
        filename: Path inside the repo.
        revision: A commit sha (from `RepoFiles.revision`) or a branch such as "main".
        size: Expected bytes; 0 to take the Hub's.
        sha256: Expected LFS sha256; None to take the Hub's (the LFS etag).
        endpoint: Hub base URL; None for huggingface_hub's (`HF_ENDPOINT`).
        token: Access token; None for the stored one.
    """

    repo_id: str
    filename: str
    revision: str = "main"
    size: int = 0
    sha256: str | None = None
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands (reported at most ~10 times a second).

    `retry` counts the automatic reconnections so far (0 on the first try), out of at most
    `retries`; phase "retrying" is the wait before the next one ("retrying (2/5)").
    """

    filename: str
    done_bytes: int
    total_bytes: int
    bytes_per_second: float
    eta_seconds: float | None
    phase: Phase
    retry: int = 0
    retries: int = 0


class DownloadControl:
    """Pause or cancel a running download from another thread; checked between chunks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop: Literal["pause", "cancel"] | None = None
        self._stopped = threading.Event()

    def pause(self) -> None:
        """Stop soon and keep the partial file: the download raises `DownloadPaused`."""
        with self._lock:
            if self._stop is None:
                self._stop = "pause"
        self._stopped.set()

    def cancel(self) -> None:
        """Stop soon and delete the partial file: the download raises `DownloadCancelled`."""
        with self._lock:
            self._stop = "cancel"
        self._stopped.set()

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking at once when pause or cancel is asked for."""
        self._stopped.wait(seconds)

    @property
    def stopping(self) -> bool:
        """Pause or cancel was asked for."""
        return self._stop is not None

    def check(self, filename: str) -> None:
        """Raise `DownloadPaused` / `DownloadCancelled` if asked to stop."""
        stop = self._stop
        if stop == "cancel":
            raise DownloadCancelled(f"Download of {filename} cancelled.")
        if stop == "pause":
            raise DownloadPaused(f"Download of {filename} paused; resume it to continue.")


ProgressCallback = Callable[[DownloadProgress], None]


class Meter:
    """Rate-limited progress with a moving-average speed and ETA."""

    def __init__(self, filename: str, callback: ProgressCallback | None) -> None:
        self._filename = filename
        self._callback = callback
        self._last = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self.retry = (0, 0)  # (retries so far, at most)

    def report(self, phase: Phase, done: int, total: int, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if phase != "downloading":
            self._samples.clear()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        then, done_then = self._samples[0]
        speed = (done - done_then) / (now - then) if now > then else 0.0
        eta = (total - done) / speed if speed > 0 and total >= done else None
        self._callback(
            DownloadProgress(self._filename, done, total, speed, eta, phase, *self.retry)
        )


@dataclass
class OptionProgress:
    """Shard progress turned into progress of the whole option."""

    callback: ProgressCallback
    done_before: int
    total: int

    def report(self, shard: DownloadProgress) -> None:
        done = self.done_before + shard.done_bytes
        speed = shard.bytes_per_second
        eta = (self.total - done) / speed if speed > 0 and self.total >= done else None
        phase: Phase = "downloading" if shard.phase == "done" else shard.phase
        if shard.phase == "done" and done >= self.total:
            phase = "done"
        self.callback(
            replace(shard, done_bytes=done, total_bytes=self.total, eta_seconds=eta, phase=phase)
        )
