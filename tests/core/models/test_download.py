"""Resumable, verified downloads with the real huggingface_hub client against the fake Hub."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from app.core.gguf_file import read_gguf_info
from app.core.models.download import download_model_file, download_option, pull
from app.core.models.download_files import (
    discard_download,
    final_path,
    partial_bytes,
    partial_path,
    unfinished_downloads,
)
from app.core.models.download_types import (
    ChecksumMismatchError,
    ConnectionDroppedError,
    DiskFullError,
    DownloadCancelled,
    DownloadControl,
    DownloadPaused,
    DownloadProgress,
    DownloadRequest,
)
from app.core.models.hub import (
    GatedRepoError,
    HubAuthError,
    HubClient,
    HubFileNotFoundError,
    HubOfflineError,
    RepoNotFoundError,
    save_token,
)
from app.core.models.library import local_models
from app.core.models.provenance import origin_of, read_origins
from app.core.paths import AppPaths, app_paths
from tests.fake_hub import FakeHub, FakeRepo, serving_hub
from tests.gguf_factory import write_tiny_gguf

REPO = "alice/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
MiB = 1 << 20


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real, loadable tiny GGUF of a few MiB (several download chunks)."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path, n_layer=4, n_embd=256, n_ff=512, name="Tiny Download")
    data = path.read_bytes()
    assert len(data) > 3 * MiB
    return data


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    # These tests look at one drop at a time; test_download_retry.py covers the retries.
    monkeypatch.setenv("HEARTH_DOWNLOAD_RETRIES", "0")
    yield from serving_hub(monkeypatch, tmp_path)


@pytest.fixture
def repo(hub: FakeHub, gguf_bytes: bytes) -> FakeRepo:
    repo = hub.add_repo(REPO)
    repo.add(FILE, gguf_bytes)
    repo.add("Tiny-Q8_0.gguf", gguf_bytes[::-1])
    return repo


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "home").ensure()


def request_for(
    hub: FakeHub, repo: FakeRepo, filename: str = FILE, **kw: object
) -> DownloadRequest:
    file = repo.files[filename]
    fields: dict[str, object] = {
        "repo_id": repo.repo_id,
        "filename": filename,
        "revision": repo.sha,
        "size": len(file.data),
        "sha256": file.sha256,
        "endpoint": hub.url,
    }
    fields.update(kw)
    return DownloadRequest(**fields)  # type: ignore[arg-type]


def gguf_files(paths: AppPaths) -> list[Path]:
    return sorted(paths.models.rglob("*.gguf"))


def partial_files(paths: AppPaths) -> list[Path]:
    folder = paths.models / ".partial"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_is_verified_recorded_and_appears_only_when_done(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    hub.faults.throttle_bps = 12 * MiB
    seen: list[DownloadProgress] = []
    times: list[float] = []

    def progress(p: DownloadProgress) -> None:
        if p.phase == "downloading" and p.done_bytes:
            assert local_models(paths) == []  # nothing shows up before it is verified
            assert partial_path(paths, REPO, FILE).is_file()
        seen.append(p)
        times.append(time.monotonic())

    path = download_model_file(paths, request_for(hub, repo), progress=progress)

    assert (
        path == final_path(paths, REPO, FILE) == paths.models / "hub" / "alice" / "Tiny-GGUF" / FILE
    )
    assert path.read_bytes() == gguf_bytes
    assert read_gguf_info(path).name == "Tiny Download"
    assert local_models(paths) == [path]
    assert partial_files(paths) == []
    origin = origin_of(paths.models, path)
    assert origin is not None and origin.kind == "download"
    assert (origin.repo_id, origin.revision) == (REPO, repo.sha)
    assert origin.sha256 == hashlib.sha256(gguf_bytes).hexdigest()

    phases = [p.phase for p in seen]
    assert phases[0] == "checking" and phases[-2:] == ["verifying", "done"]
    downloading = [p for p in seen if p.phase == "downloading"]
    assert len(downloading) >= 2
    assert [p.done_bytes for p in downloading] == sorted(p.done_bytes for p in downloading)
    assert seen[-1].done_bytes == seen[-1].total_bytes == len(gguf_bytes)
    assert any(p.bytes_per_second > 0 and p.eta_seconds is not None for p in downloading)
    # at most ~10 reports a second: after the first, "downloading" reports are >= 0.1 s apart
    rated = [
        later - earlier
        for earlier, later, a, b in zip(times, times[1:], seen, seen[1:], strict=False)
        if a.phase == b.phase == "downloading"
    ]
    assert rated and min(rated) >= 0.095


def test_a_second_download_of_the_same_file_fetches_nothing(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    first = download_model_file(paths, request_for(hub, repo))
    hub.requests.clear()
    assert download_model_file(paths, request_for(hub, repo)) == first
    assert hub.downloads_of(FILE) == []


def test_a_dropped_connection_keeps_the_part_and_resumes_with_a_range(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    hub.faults.drop_after = 2 * MiB + 12345
    request = request_for(hub, repo)
    with pytest.raises(ConnectionDroppedError, match="Try again to resume") as caught:
        download_model_file(paths, request)
    assert "\n" not in str(caught.value)
    kept = partial_bytes(paths, request)
    assert kept == 2 * MiB + 12345  # every byte that arrived was kept
    assert gguf_files(paths) == []
    assert unfinished_downloads(paths) == [dataclasses.replace(request, token=None)]

    hub.requests.clear()
    path = download_model_file(paths, request)
    assert path.read_bytes() == gguf_bytes
    (second,) = hub.downloads_of(FILE)
    assert second.range == f"bytes={kept}-"
    assert second.status == 206
    assert second.body_bytes == len(gguf_bytes) - kept  # only what was missing
    assert unfinished_downloads(paths) == []


def test_redirects_to_the_cdn_are_followed_without_the_token(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    repo.gated = "auto"
    hub.allow("hf_good", REPO)
    hub.faults.redirect = True
    hub.faults.drop_after = MiB
    request = request_for(hub, repo, token="hf_good", sha256=None)  # sha256 from the etag
    with pytest.raises(ConnectionDroppedError):
        download_model_file(paths, request)
    path = download_model_file(paths, request)
    assert path.read_bytes() == gguf_bytes
    cdn = [r for r in hub.requests if r.path.startswith("/cdn/")]
    resolve = [r for r in hub.requests if "/resolve/" in r.path and r.method == "GET"]
    assert [r.status for r in cdn] == [200, 206] and cdn[1].range == f"bytes={MiB}-"
    assert all(r.authorization is None for r in cdn)  # the token stays on the Hub
    assert all(r.authorization == "Bearer hf_good" and r.status == 302 for r in resolve)
    assert origin_of(paths.models, path).sha256 == repo.files[FILE].sha256  # type: ignore[union-attr]


def test_a_server_that_ignores_range_restarts_from_zero(
    hub: FakeHub,
    repo: FakeRepo,
    paths: AppPaths,
    gguf_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.faults.drop_after = MiB
    request = request_for(hub, repo)
    with pytest.raises(ConnectionDroppedError):
        download_model_file(paths, request)
    hub.faults.ignore_range = True
    hub.requests.clear()
    with caplog.at_level(logging.INFO, logger="app.core.models.download"):
        path = download_model_file(paths, request)
    assert path.read_bytes() == gguf_bytes
    (second,) = hub.downloads_of(FILE)
    assert (second.range, second.status, second.body_bytes) == (
        f"bytes={MiB}-",
        200,
        len(gguf_bytes),
    )
    assert "ignored the Range request" in caplog.text


def test_pause_then_resume_after_a_restart(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    hub.faults.throttle_bps = 4 * MiB
    control = DownloadControl()

    def pause_after_a_chunk(p: DownloadProgress) -> None:
        if p.phase == "downloading" and p.done_bytes >= MiB:
            control.pause()

    with pytest.raises(DownloadPaused, match="paused"):
        download_model_file(
            paths, request_for(hub, repo), progress=pause_after_a_chunk, control=control
        )
    hub.faults.throttle_bps = None
    kept = partial_bytes(paths, request_for(hub, repo))
    assert MiB <= kept < len(gguf_bytes)
    assert gguf_files(paths) == []

    # "Restart": everything needed to resume comes from the models folder.
    (request,) = unfinished_downloads(paths)
    assert (request.repo_id, request.filename, request.revision) == (REPO, FILE, repo.sha)
    assert (request.size, request.sha256, request.endpoint) == (
        len(gguf_bytes),
        repo.files[FILE].sha256,
        hub.url,
    )
    hub.requests.clear()
    checking: list[DownloadProgress] = []
    path = download_model_file(paths, request, progress=checking.append)
    assert path.read_bytes() == gguf_bytes
    (second,) = hub.downloads_of(FILE)
    assert second.range == f"bytes={kept}-" and second.body_bytes == len(gguf_bytes) - kept
    assert any(p.phase == "checking" and p.done_bytes == kept for p in checking)
    assert unfinished_downloads(paths) == []


def test_cancel_removes_the_partial_file(hub: FakeHub, repo: FakeRepo, paths: AppPaths) -> None:
    hub.faults.throttle_bps = 4 * MiB
    control = DownloadControl()

    def cancel_midway(p: DownloadProgress) -> None:
        if p.phase == "downloading" and p.done_bytes >= MiB:
            control.cancel()

    with pytest.raises(DownloadCancelled):
        download_model_file(paths, request_for(hub, repo), progress=cancel_midway, control=control)
    assert partial_files(paths) == [] and gguf_files(paths) == []
    assert unfinished_downloads(paths) == []


def test_a_pause_from_another_thread_stops_a_stalled_looking_download(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    hub.faults.throttle_bps = 2 * MiB
    control = DownloadControl()
    timer = threading.Timer(0.3, control.pause)
    timer.start()
    try:
        with pytest.raises(DownloadPaused):
            download_model_file(paths, request_for(hub, repo), control=control)
    finally:
        timer.join()
    assert partial_bytes(paths, request_for(hub, repo)) > 0


def test_corrupt_bytes_of_the_right_size_never_become_a_model(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    hub.faults.corrupt = True
    with pytest.raises(ChecksumMismatchError, match=r"corrupt .*sha256.*it was deleted"):
        download_model_file(paths, request_for(hub, repo))
    assert gguf_files(paths) == [] and partial_files(paths) == []
    assert read_origins(paths.models) == {}
    # the etag is the LFS sha256: without one in the request it is still checked
    with pytest.raises(ChecksumMismatchError):
        download_model_file(paths, request_for(hub, repo, sha256=None))


def test_a_sidecar_that_no_longer_matches_the_hub_starts_over(
    hub: FakeHub,
    repo: FakeRepo,
    paths: AppPaths,
    gguf_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.faults.drop_after = MiB
    with pytest.raises(ConnectionDroppedError):
        download_model_file(paths, request_for(hub, repo, revision="main", size=0, sha256=None))
    changed = gguf_bytes[:-16] + b"\x00" * 16
    repo.add(FILE, changed)  # a new upload of the same file name
    repo.sha = "f" * 40
    hub.requests.clear()
    with caplog.at_level(logging.WARNING, logger="app.core.models.download_files"):
        path = download_model_file(
            paths, request_for(hub, repo, revision="main", size=0, sha256=None)
        )
    assert path.read_bytes() == changed
    assert "changed on the Hub since the partial download" in caplog.text
    (second,) = hub.downloads_of(FILE)
    assert second.range is None
    assert origin_of(paths.models, path).revision == "f" * 40  # type: ignore[union-attr]


def test_a_gated_repo_needs_an_accepted_licence_and_a_token(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    repo.gated = "manual"
    hub.allow("hf_someone_else")
    with pytest.raises(GatedRepoError) as caught:
        download_model_file(paths, request_for(hub, repo))
    assert caught.value.repo_id == REPO
    message = str(caught.value)
    assert f"{hub.url}/{REPO}" in message and "accept its licence" in message
    assert "token" in message
    with pytest.raises(GatedRepoError):  # a valid token without access to this repo
        download_model_file(paths, request_for(hub, repo, token="hf_someone_else"))
    with pytest.raises(HubAuthError, match="refused the access token"):
        download_model_file(paths, request_for(hub, repo, token="hf_made_up"))
    assert partial_files(paths) == []

    hub.allow("hf_accepted", REPO)
    save_token("hf_accepted")  # stored where huggingface_hub reads it; the request has none
    path = download_model_file(paths, request_for(hub, repo))
    assert path.read_bytes() == gguf_bytes


def test_missing_repos_and_files_are_reported(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    with pytest.raises(RepoNotFoundError, match="No model repo 'nobody/None-GGUF'"):
        download_model_file(paths, DownloadRequest("nobody/None-GGUF", FILE, endpoint=hub.url))
    with pytest.raises(HubFileNotFoundError, match=r"has no file 'Tiny-Q2_K\.gguf'"):
        download_model_file(paths, DownloadRequest(REPO, "Tiny-Q2_K.gguf", endpoint=hub.url))
    assert partial_files(paths) == [] and gguf_files(paths) == []


def test_offline_is_reported_and_nothing_is_written(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    request = request_for(hub, repo)
    hub.stop()
    with pytest.raises(HubOfflineError, match="Cannot reach the Hugging Face Hub"):
        download_model_file(paths, request)
    assert partial_files(paths) == []


def test_too_little_disk_space_is_refused_before_starting(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    with pytest.raises(DiskFullError, match="Not enough disk space") as caught:
        download_model_file(paths, request_for(hub, repo), disk_free=lambda _folder: 10 * MiB)
    assert caught.value.free == 10 * MiB
    assert caught.value.needed > len(repo.files[FILE].data)
    assert "free" in str(caught.value) and "\n" not in str(caught.value)
    assert hub.downloads_of(FILE) == [] and partial_files(paths) == []


class _FillsUp:
    """A .part writer whose disk is full after `room` more bytes (ENOSPC, like a real disk)."""

    def __init__(self, path: Path, room: int) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._file.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def test_a_disk_filling_up_mid_download_keeps_the_part_for_later(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    def full_after_a_bit(path: Path) -> BinaryIO:
        return _FillsUp(path, MiB + 100)  # type: ignore[return-value]

    request = request_for(hub, repo)
    with pytest.raises(DiskFullError, match=r"disk filled up .* partial file is kept"):
        download_model_file(paths, request, open_part=full_after_a_bit)
    assert partial_bytes(paths, request) == MiB + 100
    assert gguf_files(paths) == []
    assert download_model_file(paths, request).read_bytes() == gguf_bytes


def test_split_files_download_all_shards_with_overall_progress(
    hub: FakeHub, paths: AppPaths, gguf_bytes: bytes
) -> None:
    repo = hub.add_repo("bob/Split-GGUF")
    half = len(gguf_bytes) // 2
    repo.add("Q8_0/Split-Q8_0-00001-of-00002.gguf", gguf_bytes[:half])
    repo.add("Q8_0/Split-Q8_0-00002-of-00002.gguf", gguf_bytes[half:])
    listing = HubClient(hub.url).repo_files("bob/Split-GGUF")
    option = listing.option("Q8_0")
    assert option is not None and option.is_split and option.size_bytes == len(gguf_bytes)
    seen: list[DownloadProgress] = []
    first = download_option(paths, listing, option, endpoint=hub.url, progress=seen.append)
    folder = paths.models / "hub" / "bob" / "Split-GGUF" / "Q8_0"
    assert first == folder / "Split-Q8_0-00001-of-00002.gguf"
    second = folder / "Split-Q8_0-00002-of-00002.gguf"
    assert first.read_bytes() + second.read_bytes() == gguf_bytes
    assert {p.total_bytes for p in seen} == {len(gguf_bytes)}
    done = [p.done_bytes for p in seen]
    assert done == sorted(done) and done[-1] == len(gguf_bytes)
    assert seen[-1].phase == "done"
    assert [p.phase for p in seen].count("done") == 1
    assert {p.filename for p in seen} == {f.path for f in option.files}
    assert origin_of(paths.models, second) is not None


def test_pull_picks_the_asked_or_recommended_quant(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    assert pull(paths, f"{REPO}:q8_0", endpoint=hub.url).name == "Tiny-Q8_0.gguf"
    assert pull(paths, REPO, endpoint=hub.url).read_bytes() == gguf_bytes  # Q4_K_M
    with pytest.raises(HubFileNotFoundError, match=r"has no Q2_K file; it has: Q4_K_M, Q8_0"):
        pull(paths, f"{REPO}:Q2_K", endpoint=hub.url)
    with pytest.raises(Exception, match="owner/repo"):
        pull(paths, "just-a-name", endpoint=hub.url)


def test_discard_removes_an_unfinished_download(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    hub.faults.drop_after = MiB
    with pytest.raises(ConnectionDroppedError):
        download_model_file(paths, request_for(hub, repo))
    (request,) = unfinished_downloads(paths)
    discard_download(paths, request)
    assert unfinished_downloads(paths) == [] and partial_files(paths) == []
