"""Resumable, verified downloads of GGUF files from the Hub into Hearth's models folder.

`hf_hub_download` deletes partial files, so the transfer is driven here with
huggingface_hub's public pieces: `get_hf_file_metadata` (commit, size, etag) on the
`hf_hub_url`, `build_hf_headers` (user agent, token) and the shared `get_session()` client
(TLS verification, proxies, HF_HUB_OFFLINE). The bytes go to
`models/.partial/<owner>__<repo>/<file>.part`, next to a `.part.json` sidecar that says what
they are, so a paused, dropped or interrupted download continues later with a Range
request, even after a restart. The sha256 (the LFS checksum) is computed while writing and
checked at the end; only a verified file is moved into `models/hub/<owner>/<repo>/<file>`
(atomically) and recorded in provenance. A corrupt file is deleted and never shows up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx2
from huggingface_hub import (
    constants,
    get_hf_file_metadata,
    get_session,
    hf_hub_url,
    hf_raise_for_status,
)
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # public, lazily exported

from app.core.errors import HearthError
from app.core.models.download_retry import RetryPolicy
from app.core.models.hub import (
    HubClient,
    HubError,
    HubFileNotFoundError,
    HubOfflineError,
    QuantOption,
    RepoFiles,
    hub_errors,
)
from app.core.models.provenance import Origin, origin_of, record_origin
from app.core.paths import AppPaths
from app.core.units import format_bytes

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
"""Bytes handed to the writer thread at a time (hashlib releases the GIL on big buffers)."""
DISK_MARGIN = 64 << 20
"""Free space to leave on the disk beyond the file itself."""
PROGRESS_INTERVAL_S = 0.1
SPEED_WINDOW_S = 5.0
CONNECT_TIMEOUT_S = 15.0
HUB_FOLDER = "hub"
PARTIAL_FOLDER = ".partial"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_WRITE_QUEUE_CHUNKS = 8

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

_active_lock = threading.Lock()
_active_parts: set[Path] = set()


def final_path(paths: AppPaths, repo_id: str, filename: str) -> Path:
    """Where a downloaded file lives: models/hub/<owner>/<repo>/<filename>."""
    owner, _, name = repo_id.partition("/")
    return paths.models / HUB_FOLDER / owner / name / filename


def partial_path(paths: AppPaths, repo_id: str, filename: str) -> Path:
    """The `.part` file of an unfinished download (its sidecar adds `.json`)."""
    return paths.models / PARTIAL_FOLDER / repo_id.replace("/", "__") / f"{filename}.part"


def download_model_file(
    paths: AppPaths,
    request: DownloadRequest,
    *,
    progress: ProgressCallback | None = None,
    control: DownloadControl | None = None,
    disk_free: DiskFree | None = None,
    open_part: PartOpener | None = None,
    retry: RetryPolicy | None = None,
) -> Path:
    """Download one file (resuming a partial one), verify it and move it into place.

    A connection that drops or stalls mid-file reconnects by itself (`retry`, default
    `RetryPolicy.from_env()`), resuming with a Range request.

    Args:
        paths: The app's folders.
        request: What to fetch.
        progress: Receives `DownloadProgress` at most ~10 times a second.
        control: Pause or cancel from another thread.
        disk_free: Free bytes of a folder's disk (injectable for tests).
        open_part: Opens the `.part` file for appending (injectable for tests).
        retry: Automatic retries of a dropped or stalled transfer.

    Returns:
        The verified file in the models folder.

    Raises:
        DownloadPaused, DownloadCancelled: Asked for through `control`.
        DiskFullError: Not enough room before starting, or the disk filled up (the
            partial file is kept).
        ChecksumMismatchError: Wrong sha256 or size; the bad file is deleted.
        ConnectionDroppedError: The connection broke mid-file more often than `retry`
            allows; the partial file is kept.
        HubError: Offline, repo or file not found, gated repo, token refused.
    """
    control = control or DownloadControl()
    meter = _Meter(request.filename, progress)
    endpoint = (request.endpoint or constants.ENDPOINT).rstrip("/")
    meter.report("checking", 0, request.size, force=True)
    control.check(request.filename)
    remote = _remote_file(request, endpoint)
    final = final_path(paths, request.repo_id, request.filename)
    if _already_downloaded(paths, final, remote):
        meter.report("done", remote.size, remote.size, force=True)
        return final
    part = partial_path(paths, request.repo_id, request.filename)
    with _exclusive(part):
        try:
            return _download(
                paths,
                request,
                remote,
                part,
                final,
                meter,
                control,
                disk_free,
                open_part,
                retry or RetryPolicy.from_env(),
            )
        except DownloadCancelled:
            _remove_partial(part)
            raise


def download_option(
    paths: AppPaths,
    repo: RepoFiles,
    option: QuantOption,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    control: DownloadControl | None = None,
    disk_free: DiskFree | None = None,
    open_part: PartOpener | None = None,
    retry: RetryPolicy | None = None,
) -> Path:
    """Download every file of a quant option (all shards, in order); return the first.

    Progress counts the option as a whole: `done_bytes`/`total_bytes` span all shards,
    `filename` names the shard in flight. Free space for all shards is checked first.
    """
    requests = [
        DownloadRequest(
            repo_id=repo.repo_id,
            filename=f.path,
            revision=repo.revision,
            size=f.size,
            sha256=f.sha256,
            endpoint=endpoint,
            token=token,
        )
        for f in option.files
    ]
    remaining = sum(
        max(0, r.size - _partial_size(partial_path(paths, r.repo_id, r.filename)))
        for r in requests
        if not final_path(paths, r.repo_id, r.filename).is_file()
    )
    _check_disk(paths, remaining, disk_free, what=option.name)
    total = option.size_bytes
    done_before = 0
    first: Path | None = None
    for request in requests:
        shard_progress = None
        if progress is not None:
            shard_progress = _OptionProgress(progress, done_before, total).report
        path = download_model_file(
            paths,
            request,
            progress=shard_progress,
            control=control,
            disk_free=disk_free,
            open_part=open_part,
            retry=retry,
        )
        first = first or path
        done_before += request.size or path.stat().st_size
    if first is None:
        raise HubFileNotFoundError(f"{repo.repo_id}: the chosen option has no files.")
    return first


def pull(
    paths: AppPaths,
    spec: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    control: DownloadControl | None = None,
    retry: RetryPolicy | None = None,
) -> Path:
    """Download "owner/repo" (the recommended quant) or "owner/repo:Q4_K_M"; return its path."""
    repo_id, _, quant = spec.strip().partition(":")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(
            f"'{spec}' is not a model to pull: use owner/repo or owner/repo:QUANT, e.g. "
            "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M."
        )
    repo = HubClient(endpoint, token).repo_files(repo_id)
    if not repo.options:
        raise HubFileNotFoundError(f"{repo_id} has no GGUF files to download.")
    option = repo.option(quant) if quant else repo.recommended()
    if option is None:
        quants = ", ".join(dict.fromkeys(o.quant for o in repo.options if not o.is_projector))
        raise HubFileNotFoundError(
            f"{repo_id} has no {quant.upper() or 'chat model'} file; it has: {quants or 'none'}."
        )
    return download_option(
        paths,
        repo,
        option,
        endpoint=endpoint,
        token=token,
        progress=progress,
        control=control,
        retry=retry,
    )


def unfinished_downloads(paths: AppPaths) -> list[DownloadRequest]:
    """Partial downloads left behind (paused, dropped, or the app was closed), to resume."""
    folder = paths.models / PARTIAL_FOLDER
    found: list[DownloadRequest] = []
    for sidecar in sorted(folder.rglob("*.part.json")) if folder.is_dir() else ():
        record = _read_sidecar(sidecar)
        if record is None:
            continue
        found.append(
            DownloadRequest(
                repo_id=record["repo_id"],
                filename=record["filename"],
                revision=record["revision"],
                size=int(record["size"]),
                sha256=record.get("sha256"),
                endpoint=record.get("endpoint"),
            )
        )
    return found


def partial_bytes(paths: AppPaths, request: DownloadRequest) -> int:
    """Bytes already fetched for an unfinished download."""
    return _partial_size(partial_path(paths, request.repo_id, request.filename))


def discard_download(paths: AppPaths, request: DownloadRequest) -> None:
    """Delete an unfinished download's partial file and sidecar."""
    part = partial_path(paths, request.repo_id, request.filename)
    with _exclusive(part):
        _remove_partial(part)


# -- the transfer ---------------------------------------------------------------------


@dataclass(frozen=True)
class _RemoteFile:
    repo_id: str
    filename: str
    commit: str
    size: int
    sha256: str | None
    etag: str
    endpoint: str
    token: str | None = field(repr=False)

    @property
    def url(self) -> str:
        return hf_hub_url(self.repo_id, self.filename, revision=self.commit, endpoint=self.endpoint)


def _remote_file(request: DownloadRequest, endpoint: str) -> _RemoteFile:
    """Ask the Hub (HEAD on the resolve URL) for the file's commit, size and etag."""
    url = hf_hub_url(
        request.repo_id, request.filename, revision=request.revision, endpoint=endpoint
    )
    with hub_errors(
        endpoint, repo_id=request.repo_id, filename=request.filename, revision=request.revision
    ):
        meta = get_hf_file_metadata(url, token=request.token, endpoint=endpoint)
    etag = meta.etag or ""
    size = meta.size if meta.size is not None else request.size
    if request.size and meta.size is not None and request.size != meta.size:
        log.warning(
            "%s/%s: the Hub says %d bytes, the request said %d; using the Hub's",
            request.repo_id,
            request.filename,
            meta.size,
            request.size,
        )
    sha256 = request.sha256 or (etag if _SHA256_RE.match(etag) else None)
    if sha256 is None:
        log.warning("%s/%s: no sha256 known; only its size is checked", request.repo_id, etag)
    return _RemoteFile(
        repo_id=request.repo_id,
        filename=request.filename,
        commit=meta.commit_hash or request.revision,
        size=size,
        sha256=sha256.lower() if sha256 else None,
        etag=etag,
        endpoint=endpoint,
        token=request.token,
    )


def _already_downloaded(paths: AppPaths, final: Path, remote: _RemoteFile) -> bool:
    if not final.is_file() or final.stat().st_size != remote.size:
        return False
    origin = origin_of(paths.models, final)
    return origin is not None and origin.sha256 is not None and origin.sha256 == remote.sha256


def _download(
    paths: AppPaths,
    request: DownloadRequest,
    remote: _RemoteFile,
    part: Path,
    final: Path,
    meter: _Meter,
    control: DownloadControl,
    disk_free: DiskFree | None,
    open_part: PartOpener | None,
    retry: RetryPolicy,
) -> Path:
    offset = _resumable_offset(part, remote)
    _check_disk(paths, remote.size - offset, disk_free, what=request.filename)
    part.parent.mkdir(parents=True, exist_ok=True)
    _write_sidecar(part, remote)
    digest = hashlib.sha256()
    if offset:
        log.info("resuming %s/%s at byte %d", remote.repo_id, remote.filename, offset)
        _hash_existing(part, offset, digest, meter, control, remote.size)
    if offset < remote.size or remote.size == 0:
        offset, digest = _transfer_with_retries(
            remote, part, offset, digest, meter, control, open_part, retry
        )
    meter.report("verifying", offset, remote.size, force=True)
    _verify(part, remote, offset, digest.hexdigest())
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    _sidecar(part).unlink(missing_ok=True)
    _prune_empty(part.parent, paths.models / PARTIAL_FOLDER)
    record_origin(
        paths.models,
        final,
        Origin(
            kind="download",
            repo_id=remote.repo_id,
            revision=remote.commit,
            sha256=digest.hexdigest(),
        ),
    )
    log.info("downloaded %s/%s to %s", remote.repo_id, remote.filename, final)
    meter.report("done", offset, remote.size, force=True)
    return final


def _transfer(
    remote: _RemoteFile,
    part: Path,
    offset: int,
    digest: hashlib._Hash,
    meter: _Meter,
    control: DownloadControl,
    open_part: PartOpener | None,
    stall_s: float,
) -> tuple[int, hashlib._Hash]:
    """GET the file from `offset` on, appending to `part`.

    Returns:
        The bytes now in `part` and the sha256 of all of them.

    Raises:
        _Dropped: The connection broke or stalled (no byte for `stall_s`); every byte
            that arrived is in `part`.
    """
    headers = build_hf_headers(token=remote.token)
    headers["Accept-Encoding"] = "identity"
    if offset:
        headers["Range"] = f"bytes={offset}-"
    timeout = httpx2.Timeout(stall_s, connect=CONNECT_TIMEOUT_S)
    errors = hub_errors(
        remote.endpoint, repo_id=remote.repo_id, filename=remote.filename, revision=remote.commit
    )
    with contextlib.ExitStack() as stack:
        with errors:
            response = stack.enter_context(
                get_session().stream(
                    "GET", remote.url, headers=headers, timeout=timeout, follow_redirects=True
                )
            )
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
        if offset and response.status_code == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise _Dropped(
                    offset, digest, f"the server sent it from byte {start}, not {offset}"
                )
        elif offset:
            log.info(
                "the server ignored the Range request for %s; starting again from byte 0",
                remote.filename,
            )
            offset = 0
            digest = hashlib.sha256()
            with open(part, "r+b") as file:
                file.truncate(0)
        sink = _Sink(part, digest, open_part)
        done = offset
        pending: list[bytes] = []
        pending_size = 0
        try:
            meter.report("downloading", done, remote.size, force=True)
            for piece in response.iter_bytes():
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= CHUNK_SIZE:
                    sink.put(pending)
                    done += pending_size
                    pending = []
                    pending_size = 0
                    meter.report("downloading", done, remote.size)
                    control.check(remote.filename)
            if pending:
                sink.put(pending)
                done += pending_size
                pending = []
        except OSError as exc:
            with contextlib.suppress(OSError):
                sink.close()
            raise _write_error(exc, part, remote.size - done) from exc
        except httpx2.TransportError as exc:
            try:
                if pending:  # keep every byte that arrived
                    sink.put(pending)
                    done += pending_size
                sink.close()
            except OSError as write_exc:
                raise _write_error(write_exc, part, remote.size - done) from write_exc
            stalled = isinstance(exc, httpx2.ReadTimeout)
            why = f"no data for {stall_s:g} s" if stalled else _reason(exc)
            raise _Dropped(done, digest, why) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                sink.close()
            raise
        try:
            sink.close()
        except OSError as exc:
            raise _write_error(exc, part, remote.size - done) from exc
    return done, digest


class _Dropped(Exception):
    """A transfer broke after `done` bytes (all in the part file, hashed in `digest`)."""

    def __init__(self, done: int, digest: hashlib._Hash, reason: str) -> None:
        super().__init__(reason)
        self.done = done
        self.digest = digest
        self.reason = reason


def _transfer_with_retries(
    remote: _RemoteFile,
    part: Path,
    offset: int,
    digest: hashlib._Hash,
    meter: _Meter,
    control: DownloadControl,
    open_part: PartOpener | None,
    policy: RetryPolicy,
) -> tuple[int, hashlib._Hash]:
    """`_transfer`, reconnecting after a drop or a stall with exponential backoff."""
    retry = 0
    while True:
        meter.retry = (retry, policy.retries)
        try:
            return _transfer(
                remote, part, offset, digest, meter, control, open_part, policy.stall_s
            )
        except _Dropped as exc:
            offset, digest, reason = exc.done, exc.digest, exc.reason
            failure: Exception = exc
        except HubOfflineError as exc:  # reconnecting failed: the Hub answered moments ago
            reason, failure = _reason(exc), exc
        if retry >= policy.retries:
            if isinstance(failure, HubOfflineError):
                raise failure
            tried = f" after {retry} automatic retries" if retry else ""
            raise ConnectionDroppedError(
                f"The connection dropped while downloading {remote.filename}{tried} "
                f"({format_bytes(offset)} of {format_bytes(remote.size)} kept; {reason}). "
                "Try again to resume where it stopped."
            ) from failure
        retry += 1
        delay = policy.delay(retry)
        log.warning(
            "download of %s broke at byte %d (%s); retry %d of %d in %.1f s",
            remote.filename,
            offset,
            reason,
            retry,
            policy.retries,
            delay,
        )
        meter.retry = (retry, policy.retries)
        meter.report("retrying", offset, remote.size, force=True)
        control.wait(delay)
        control.check(remote.filename)


def _verify(part: Path, remote: _RemoteFile, done: int, sha256: str) -> None:
    """Check size and sha256; delete the partial file (and sidecar) when they are wrong."""
    actual = _partial_size(part)
    problem = None
    if remote.size and actual != remote.size:
        problem = f"it has {actual} bytes instead of {remote.size}"
    elif remote.sha256 is not None and sha256 != remote.sha256:
        problem = f"its sha256 is {sha256[:12]}... instead of {remote.sha256[:12]}..."
    if problem is None:
        return
    _remove_partial(part)
    raise ChecksumMismatchError(
        f"The download of {remote.filename} from {remote.repo_id} is corrupt ({problem}); "
        "it was deleted. Try again."
    )


def _resumable_offset(part: Path, remote: _RemoteFile) -> int:
    """Bytes of an earlier partial download of this same file; 0 (and cleaned) otherwise."""
    sidecar = _read_sidecar(_sidecar(part))
    size = _partial_size(part)
    if sidecar is None:
        if size:
            log.info("%s has no usable sidecar; starting over", part)
        _remove_partial(part)
        return 0
    if (sidecar.get("etag"), int(sidecar.get("size", -1))) != (remote.etag, remote.size) or (
        remote.sha256 and sidecar.get("sha256") not in (None, remote.sha256)
    ):
        log.warning(
            "%s/%s changed on the Hub since the partial download (revision %s, etag %s; now "
            "revision %s, etag %s); starting over",
            remote.repo_id,
            remote.filename,
            sidecar.get("revision"),
            sidecar.get("etag"),
            remote.commit,
            remote.etag,
        )
        _remove_partial(part)
        return 0
    if sidecar.get("revision") != remote.commit:
        log.info("%s: same file at a newer revision %s; resuming", remote.filename, remote.commit)
    if size > remote.size:
        log.warning("%s is longer than the file on the Hub; starting over", part)
        _remove_partial(part)
        return 0
    return size


def _hash_existing(
    part: Path,
    size: int,
    digest: hashlib._Hash,
    meter: _Meter,
    control: DownloadControl,
    total: int,
) -> None:
    """Feed the bytes already on disk to the checksum (phase "checking")."""
    done = 0
    with open(part, "rb") as file:
        while done < size:
            chunk = file.read(min(CHUNK_SIZE * 4, size - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
            meter.report("checking", done, total)
            control.check(part.name)
    meter.report("checking", done, total, force=True)


def _check_disk(paths: AppPaths, remaining: int, disk_free: DiskFree | None, *, what: str) -> None:
    """Raise `DiskFullError` unless `remaining` bytes plus a margin fit on the models disk."""
    if remaining <= 0:
        return
    paths.models.mkdir(parents=True, exist_ok=True)
    free = (disk_free or _disk_free)(paths.models)
    needed = remaining + DISK_MARGIN
    if free < needed:
        raise DiskFullError(
            f"Not enough disk space for {what}: it needs {format_bytes(needed)} free in "
            f"{paths.models}, and {format_bytes(free)} is free. Free some space and try again.",
            needed=needed,
            free=free,
        )


def _disk_free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _write_error(exc: OSError, part: Path, remaining: int) -> HearthError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk filled up while writing {part.name} ({format_bytes(remaining)} still to "
            "go); the partial file is kept. Free some space and resume.",
            needed=remaining,
        )
    return DownloadError(f"Could not write {part}: {exc.strerror or exc}.")


class _Sink:
    """Writes and hashes chunks on a thread of its own, overlapping the network reads."""

    def __init__(self, part: Path, digest: hashlib._Hash, open_part: PartOpener | None) -> None:
        try:
            self._file = (open_part or _append)(part)
        except OSError as exc:
            raise _write_error(exc, part, 0) from exc
        self._digest = digest
        self._error: OSError | None = None
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=_WRITE_QUEUE_CHUNKS)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hearth-download-writer")
        self._thread.start()

    def put(self, pieces: list[bytes]) -> None:
        """Queue pieces received together (about `CHUNK_SIZE` bytes) for writing."""
        if self._error is not None:
            raise self._error
        self._queue.put(pieces)

    def close(self) -> None:
        """Wait for every write, close the file; raise the first write error."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._file.close()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (pieces := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                for piece in pieces:  # both release the GIL on pieces this big
                    self._file.write(piece)
                    self._digest.update(piece)
            except OSError as exc:
                self._error = exc
        with contextlib.suppress(OSError):
            self._file.flush()


def _append(part: Path) -> BinaryIO:
    return open(part, "ab")


class _Meter:
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
class _OptionProgress:
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


# -- partial files --------------------------------------------------------------------


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _write_sidecar(part: Path, remote: _RemoteFile) -> None:
    record = {
        "repo_id": remote.repo_id,
        "revision": remote.commit,
        "filename": remote.filename,
        "size": remote.size,
        "sha256": remote.sha256,
        "etag": remote.etag,
        "endpoint": remote.endpoint,
    }
    sidecar = _sidecar(part)
    temporary = sidecar.with_name(sidecar.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(temporary, sidecar)


def _read_sidecar(sidecar: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not all(
            isinstance(record.get(k), str) for k in ("repo_id", "filename", "revision")
        ):
            raise ValueError("missing fields")
        int(record["size"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unusable download sidecar %s: %s", sidecar, exc)
        return None
    return record


def _partial_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except OSError:
        return 0


def _remove_partial(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to (not including) `stop` while they are empty."""
    with contextlib.suppress(OSError):
        while folder != stop and stop in folder.parents:
            folder.rmdir()
            folder = folder.parent


@contextlib.contextmanager
def _exclusive(part: Path) -> Iterator[None]:
    """One download per partial file in this process."""
    key = part.resolve()
    with _active_lock:
        if key in _active_parts:
            raise DownloadError(f"{part.name.removesuffix('.part')} is already downloading.")
        _active_parts.add(key)
    try:
        yield
    finally:
        with _active_lock:
            _active_parts.discard(key)


def _content_range_start(value: str | None) -> int:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else -1


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
