"""Downloads survive dropped and stalled connections by themselves (fake Hub on loopback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.download import download_model_file
from app.core.models.download_files import partial_bytes
from app.core.models.download_retry import RetryPolicy
from app.core.models.download_types import (
    ConnectionDroppedError,
    DownloadControl,
    DownloadPaused,
    DownloadProgress,
)
from app.core.paths import AppPaths, app_paths
from tests.core.models.test_download import FILE, REPO, MiB, request_for
from tests.fake_hub import FakeHub, FakeRepo, serving_hub
from tests.gguf_factory import write_tiny_gguf

FAST = RetryPolicy(retries=5, first_delay_s=0.01, max_delay_s=0.05, stall_s=0.5)


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path, n_layer=4, n_embd=256, n_ff=512, name="Tiny Download")
    return path.read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serving_hub(monkeypatch, tmp_path)


@pytest.fixture
def repo(hub: FakeHub, gguf_bytes: bytes) -> FakeRepo:
    made = hub.add_repo(REPO)
    made.add(FILE, gguf_bytes)
    return made


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "home").ensure()


def test_drops_and_a_stall_are_retried_with_ranges_until_verified(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths, gguf_bytes: bytes
) -> None:
    hub.faults.drops = [MiB // 2, MiB // 2, MiB // 2]
    hub.faults.stall_after = MiB // 4
    hub.faults.stall_s = 30
    seen: list[DownloadProgress] = []
    started = time.monotonic()
    path = download_model_file(paths, request_for(hub, repo), progress=seen.append, retry=FAST)
    assert time.monotonic() - started < 20  # the stall was detected in 0.5 s, not 30
    assert path.read_bytes() == gguf_bytes
    gets = hub.downloads_of(FILE)
    assert len(gets) == 5  # three drops, one stall, then the rest
    offsets = [0, MiB // 2, MiB, 3 * MiB // 2, 3 * MiB // 2 + MiB // 4]
    assert [g.range for g in gets] == [None] + [f"bytes={o}-" for o in offsets[1:]]
    assert [g.status for g in gets] == [200, 206, 206, 206, 206]
    retrying = [(p.retry, p.retries) for p in seen if p.phase == "retrying"]
    assert retrying == [(1, 5), (2, 5), (3, 5), (4, 5)]
    assert seen[-1].phase == "done" and seen[-1].retry == 4


def test_giving_up_after_the_last_retry_keeps_the_part(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    hub.faults.drops = [100_000] * 4
    request = request_for(hub, repo)
    policy = RetryPolicy(retries=3, first_delay_s=0.01, stall_s=5)
    with pytest.raises(ConnectionDroppedError, match="after 3 automatic retries") as caught:
        download_model_file(paths, request, retry=policy)
    assert "Try again to resume" in str(caught.value) and "\n" not in str(caught.value)
    assert partial_bytes(paths, request) == 4 * 100_000
    path = download_model_file(paths, request, retry=policy)  # the same call resumes
    assert path.is_file()


def test_pause_during_the_backoff_stops_at_once(
    hub: FakeHub, repo: FakeRepo, paths: AppPaths
) -> None:
    hub.faults.drops = [MiB]
    control = DownloadControl()

    def pause_when_retrying(progress: DownloadProgress) -> None:
        if progress.phase == "retrying":
            threading.Timer(0.05, control.pause).start()

    slow = RetryPolicy(retries=5, first_delay_s=60, max_delay_s=60, stall_s=5)
    started = time.monotonic()
    with pytest.raises(DownloadPaused):
        download_model_file(
            paths, request_for(hub, repo), progress=pause_when_retrying, control=control, retry=slow
        )
    assert time.monotonic() - started < 10


def test_policy_backoff_and_environment() -> None:
    policy = RetryPolicy()
    assert policy.retries >= 5 and policy.stall_s == 30
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]
    env = {
        "HEARTH_DOWNLOAD_RETRIES": "2",
        "HEARTH_DOWNLOAD_STALL_S": "0.5",
        "HEARTH_DOWNLOAD_BACKOFF_S": "0.1",
    }
    assert RetryPolicy.from_env(env) == RetryPolicy(retries=2, first_delay_s=0.1, stall_s=0.5)
    assert RetryPolicy.from_env({"HEARTH_DOWNLOAD_STALL_S": "nan"}) == RetryPolicy()
    assert RetryPolicy.from_env({"HEARTH_DOWNLOAD_RETRIES": "x"}) == RetryPolicy()
