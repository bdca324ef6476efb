"""A download's files on disk: where they go, the `.part` file and its `.part.json` sidecar,
the offset a download resumes from, disk-space checks, and the thread that writes and hashes.

Bytes go to `models/.partial/<owner>__<repo>/<file>.part`; the sidecar says what they are
(repo, revision, size, sha256, etag), so a later run resumes only the very same file. A
verified file lives at `models/hub/<owner>/<repo>/<file>`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from huggingface_hub import hf_hub_url

from app.core.errors import HearthError
from app.core.models.download_types import (
    ChecksumMismatchError,
    DiskFree,
    DiskFullError,
    DownloadControl,
    DownloadError,
    DownloadRequest,
    Meter,
    PartOpener,
)
from app.core.models.provenance import origin_of
from app.core.paths import AppPaths
from app.core.units import format_bytes

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
"""Bytes handed to the writer thread at a time (hashlib releases the GIL on big buffers)."""
DISK_MARGIN = 64 << 20
"""Free space to leave on the disk beyond the file itself."""
HUB_FOLDER = "hub"
PARTIAL_FOLDER = ".partial"
_WRITE_QUEUE_CHUNKS = 8

_active_lock = threading.Lock()
_active_parts: set[Path] = set()


def final_path(paths: AppPaths, repo_id: str, filename: str) -> Path:
    """Where a downloaded file lives: models/hub/<owner>/<repo>/<filename>."""
    owner, _, name = repo_id.partition("/")
    return paths.models / HUB_FOLDER / owner / name / filename


def partial_path(paths: AppPaths, repo_id: str, filename: str) -> Path:
    """The `.part` file of an unfinished download (its sidecar adds `.json`)."""
    return paths.models / PARTIAL_FOLDER / repo_id.replace("/", "__") / f"{filename}.part"


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
    return partial_size(partial_path(paths, request.repo_id, request.filename))


def discard_download(paths: AppPaths, request: DownloadRequest) -> None:
    """Delete an unfinished download's partial file and sidecar."""
    part = partial_path(paths, request.repo_id, request.filename)
    with exclusive(part):
        remove_partial(part)


@dataclass(frozen=True)
class RemoteFile:
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


def already_downloaded(paths: AppPaths, final: Path, remote: RemoteFile) -> bool:
    if not final.is_file() or final.stat().st_size != remote.size:
        return False
    origin = origin_of(paths.models, final)
    return origin is not None and origin.sha256 is not None and origin.sha256 == remote.sha256


def verify(part: Path, remote: RemoteFile, done: int, sha256: str) -> None:
    """Check size and sha256; delete the partial file (and sidecar) when they are wrong."""
    actual = partial_size(part)
    problem = None
    if remote.size and actual != remote.size:
        problem = f"it has {actual} bytes instead of {remote.size}"
    elif remote.sha256 is not None and sha256 != remote.sha256:
        problem = f"its sha256 is {sha256[:12]}... instead of {remote.sha256[:12]}..."
    if problem is None:
        return
    remove_partial(part)
    raise ChecksumMismatchError(
        f"The download of {remote.filename} from {remote.repo_id} is corrupt ({problem}); "
        "it was deleted. Try again."
    )


def resumable_offset(part: Path, remote: RemoteFile) -> int:
    """Bytes of an earlier partial download of this same file; 0 (and cleaned) otherwise."""
    sidecar = _read_sidecar(sidecar_path(part))
    size = partial_size(part)
    if sidecar is None:
        if size:
            log.info("%s has no usable sidecar; starting over", part)
        remove_partial(part)
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
        remove_partial(part)
        return 0
    if sidecar.get("revision") != remote.commit:
        log.info("%s: same file at a newer revision %s; resuming", remote.filename, remote.commit)
    if size > remote.size:
        log.warning("%s is longer than the file on the Hub; starting over", part)
        remove_partial(part)
        return 0
    return size


def hash_existing(
    part: Path,
    size: int,
    digest: hashlib._Hash,
    meter: Meter,
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


def check_disk(paths: AppPaths, remaining: int, disk_free: DiskFree | None, *, what: str) -> None:
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


def write_error(exc: OSError, part: Path, remaining: int) -> HearthError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk filled up while writing {part.name} ({format_bytes(remaining)} still to "
            "go); the partial file is kept. Free some space and resume.",
            needed=remaining,
        )
    return DownloadError(f"Could not write {part}: {exc.strerror or exc}.")


class Sink:
    """Writes and hashes chunks on a thread of its own, overlapping the network reads."""

    def __init__(self, part: Path, digest: hashlib._Hash, open_part: PartOpener | None) -> None:
        try:
            self._file = (open_part or _append)(part)
        except OSError as exc:
            raise write_error(exc, part, 0) from exc
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


# -- partial files --------------------------------------------------------------------


def sidecar_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def write_sidecar(part: Path, remote: RemoteFile) -> None:
    record = {
        "repo_id": remote.repo_id,
        "revision": remote.commit,
        "filename": remote.filename,
        "size": remote.size,
        "sha256": remote.sha256,
        "etag": remote.etag,
        "endpoint": remote.endpoint,
    }
    sidecar = sidecar_path(part)
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


def partial_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except OSError:
        return 0


def remove_partial(part: Path) -> None:
    part.unlink(missing_ok=True)
    sidecar_path(part).unlink(missing_ok=True)


def prune_empty(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to (not including) `stop` while they are empty."""
    with contextlib.suppress(OSError):
        while folder != stop and stop in folder.parents:
            folder.rmdir()
            folder = folder.parent


@contextlib.contextmanager
def exclusive(part: Path) -> Iterator[None]:
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
