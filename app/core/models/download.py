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

The files on disk (the `.part` file, its sidecar, resume offsets, disk checks, the writer
thread) are `download_files.py`; the request, progress, control and errors are
`download_types.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path

import httpx2
from huggingface_hub import (
    constants,
    get_hf_file_metadata,
    get_session,
    hf_hub_url,
    hf_raise_for_status,
)
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # public, lazily exported

from app.core.models.download_files import (
    CHUNK_SIZE,
    PARTIAL_FOLDER,
    RemoteFile,
    Sink,
    already_downloaded,
    check_disk,
    exclusive,
    final_path,
    hash_existing,
    partial_path,
    partial_size,
    prune_empty,
    remove_partial,
    resumable_offset,
    sidecar_path,
    verify,
    write_error,
    write_sidecar,
)
from app.core.models.download_retry import RetryPolicy
from app.core.models.download_types import (
    ConnectionDroppedError,
    DiskFree,
    DownloadCancelled,
    DownloadControl,
    DownloadRequest,
    Meter,
    OptionProgress,
    PartOpener,
    ProgressCallback,
)
from app.core.models.hub import (
    HubClient,
    HubError,
    HubFileNotFoundError,
    HubOfflineError,
    QuantOption,
    RepoFiles,
    hub_errors,
)
from app.core.models.provenance import Origin, record_origin
from app.core.paths import AppPaths
from app.core.units import format_bytes

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
    meter = Meter(request.filename, progress)
    endpoint = (request.endpoint or constants.ENDPOINT).rstrip("/")
    meter.report("checking", 0, request.size, force=True)
    control.check(request.filename)
    remote = _remote_file(request, endpoint)
    final = final_path(paths, request.repo_id, request.filename)
    if already_downloaded(paths, final, remote):
        meter.report("done", remote.size, remote.size, force=True)
        return final
    part = partial_path(paths, request.repo_id, request.filename)
    with exclusive(part):
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
            remove_partial(part)
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
        max(0, r.size - partial_size(partial_path(paths, r.repo_id, r.filename)))
        for r in requests
        if not final_path(paths, r.repo_id, r.filename).is_file()
    )
    check_disk(paths, remaining, disk_free, what=option.name)
    total = option.size_bytes
    done_before = 0
    first: Path | None = None
    for request in requests:
        shard_progress = None
        if progress is not None:
            shard_progress = OptionProgress(progress, done_before, total).report
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


# -- the transfer ---------------------------------------------------------------------


def _remote_file(request: DownloadRequest, endpoint: str) -> RemoteFile:
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
    return RemoteFile(
        repo_id=request.repo_id,
        filename=request.filename,
        commit=meta.commit_hash or request.revision,
        size=size,
        sha256=sha256.lower() if sha256 else None,
        etag=etag,
        endpoint=endpoint,
        token=request.token,
    )


def _download(
    paths: AppPaths,
    request: DownloadRequest,
    remote: RemoteFile,
    part: Path,
    final: Path,
    meter: Meter,
    control: DownloadControl,
    disk_free: DiskFree | None,
    open_part: PartOpener | None,
    retry: RetryPolicy,
) -> Path:
    offset = resumable_offset(part, remote)
    check_disk(paths, remote.size - offset, disk_free, what=request.filename)
    part.parent.mkdir(parents=True, exist_ok=True)
    write_sidecar(part, remote)
    digest = hashlib.sha256()
    if offset:
        log.info("resuming %s/%s at byte %d", remote.repo_id, remote.filename, offset)
        hash_existing(part, offset, digest, meter, control, remote.size)
    if offset < remote.size or remote.size == 0:
        offset, digest = _transfer_with_retries(
            remote, part, offset, digest, meter, control, open_part, retry
        )
    meter.report("verifying", offset, remote.size, force=True)
    verify(part, remote, offset, digest.hexdigest())
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    sidecar_path(part).unlink(missing_ok=True)
    prune_empty(part.parent, paths.models / PARTIAL_FOLDER)
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
    remote: RemoteFile,
    part: Path,
    offset: int,
    digest: hashlib._Hash,
    meter: Meter,
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
        sink = Sink(part, digest, open_part)
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
            raise write_error(exc, part, remote.size - done) from exc
        except httpx2.TransportError as exc:
            try:
                if pending:  # keep every byte that arrived
                    sink.put(pending)
                    done += pending_size
                sink.close()
            except OSError as write_exc:
                raise write_error(write_exc, part, remote.size - done) from write_exc
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
            raise write_error(exc, part, remote.size - done) from exc
    return done, digest


class _Dropped(Exception):
    """A transfer broke after `done` bytes (all in the part file, hashed in `digest`)."""

    def __init__(self, done: int, digest: hashlib._Hash, reason: str) -> None:
        super().__init__(reason)
        self.done = done
        self.digest = digest
        self.reason = reason


def _transfer_with_retries(
    remote: RemoteFile,
    part: Path,
    offset: int,
    digest: hashlib._Hash,
    meter: Meter,
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


def _content_range_start(value: str | None) -> int:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else -1


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
