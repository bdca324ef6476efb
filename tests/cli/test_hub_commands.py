"""`hearth search` and `hearth pull` as a person runs them: real subprocesses, with
HF_ENDPOINT and HF_HOME pointing at the fake Hub and a scratch huggingface home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.gguf_file import read_gguf_info
from app.core.models.provenance import origin_of
from app.core.paths import app_paths
from tests.fake_hub import FakeHub, serving_hub
from tests.gguf_factory import write_tiny_gguf

REPO = "alice/Tiny-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    hub_iter = serving_hub(monkeypatch, tmp_path)
    hub = next(hub_iter)
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", name="Tiny Pulled")
    repo = hub.add_repo(
        REPO, downloads=42, likes=7, gguf={"total": 1_234_567, "architecture": "llama"}
    )
    repo.add("Tiny-Q4_K_M.gguf", tiny.read_bytes())
    repo.add("Tiny-Q8_0.gguf", tiny.read_bytes()[::-1])
    hub.add_repo("bob/Other-GGUF", downloads=3, likes=70, card_data={"license": "mit"})
    yield hub
    yield from hub_iter


def hearth(
    *args: str, hub: FakeHub, home: Path, hf_home: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "HEARTH_HOME": str(home),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **env,
    }
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {"home": tmp_path / "hearth", "hf_home": tmp_path / "hf"}


def test_search_prints_a_table_and_json(hub: FakeHub, dirs: dict[str, Path]) -> None:
    table = hearth("search", "gguf", hub=hub, **dirs)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["REPO", "DOWNLOADS", "LIKES"]
    assert lines[1].split()[:5] == [REPO, "42", "7", "1M", "llama"]
    assert lines[2].split()[0] == "bob/Other-GGUF" and lines[2].endswith("mit")

    by_likes = hearth("search", "gguf", "--sort", "likes", "--json", hub=hub, **dirs)
    assert by_likes.returncode == 0, by_likes.stderr
    found = json.loads(by_likes.stdout)
    assert [m["repo_id"] for m in found] == ["bob/Other-GGUF", REPO]
    assert found[1]["n_params"] == 1_234_567 and found[0]["licence"] == "mit"


def test_pull_downloads_a_verified_model_into_the_library(
    hub: FakeHub, dirs: dict[str, Path]
) -> None:
    done = hearth("pull", f"{REPO}:Q4_K_M", hub=hub, **dirs)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    models = app_paths(dirs["home"]).models
    assert path == models / "hub" / "alice" / "Tiny-GGUF" / "Tiny-Q4_K_M.gguf"
    assert read_gguf_info(path).name == "Tiny Pulled"
    assert origin_of(models, path) is not None
    assert "100.0%" in done.stderr and "[####" in done.stderr  # the progress bar
    assert not (models / ".partial").exists() or not any((models / ".partial").rglob("*.part"))

    recommended = hearth("pull", REPO, hub=hub, **dirs)  # Q4_K_M again: already there
    assert recommended.returncode == 0 and Path(recommended.stdout.strip()) == path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.split("\n") if line.strip()]
    errors = [line for line in lines if "hearth: error:" in line]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0]
    return errors[0]


def test_pull_failures_end_with_one_clear_line(hub: FakeHub, dirs: dict[str, Path]) -> None:
    line = one_error_line(hearth("pull", "nobody/Missing-GGUF", hub=hub, **dirs))
    assert "No model repo 'nobody/Missing-GGUF'" in line
    line = one_error_line(hearth("pull", f"{REPO}:Q2_K", hub=hub, **dirs))
    assert "has no Q2_K file; it has: Q4_K_M, Q8_0" in line

    hub.faults.corrupt = True
    line = one_error_line(hearth("pull", REPO, hub=hub, **dirs))
    assert "corrupt" in line and "deleted" in line
    hub.faults.corrupt = False

    hub.faults.drop_after = 100_000
    line = one_error_line(hearth("pull", REPO, hub=hub, **dirs, HEARTH_DOWNLOAD_RETRIES="0"))
    assert "connection dropped" in line and "resume" in line
    assert hearth("pull", REPO, hub=hub, **dirs).returncode == 0  # resumes

    line = one_error_line(hearth("pull", REPO, hub=hub, **dirs, HF_ENDPOINT="http://127.0.0.1:9"))
    assert "Cannot reach the Hugging Face Hub at http://127.0.0.1:9" in line
    line = one_error_line(hearth("pull", REPO, hub=hub, **dirs, HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE" in line


def test_pull_uses_the_token_in_hf_home_for_a_gated_repo(
    hub: FakeHub, dirs: dict[str, Path]
) -> None:
    hub.repos[REPO].gated = "auto"
    line = one_error_line(hearth("pull", REPO, hub=hub, **dirs))
    assert f"{hub.url}/{REPO}" in line and "accept its licence" in line

    hub.allow("hf_cli_token", REPO)
    dirs["hf_home"].mkdir(parents=True)
    (dirs["hf_home"] / "token").write_text("hf_cli_token", encoding="utf-8")
    done = hearth("pull", REPO, hub=hub, **dirs)
    assert done.returncode == 0, done.stderr
    assert any(r.authorization == "Bearer hf_cli_token" for r in hub.requests)


def test_pull_rides_out_drops_and_a_stall_by_itself(hub: FakeHub, dirs: dict[str, Path]) -> None:
    hub.faults.drops = [20_000, 20_000, 20_000]
    hub.faults.stall_after = 10_000
    hub.faults.stall_s = 60
    fast = {"HEARTH_DOWNLOAD_STALL_S": "0.5", "HEARTH_DOWNLOAD_BACKOFF_S": "0.01"}
    result = hearth("pull", f"{REPO}:Q4_K_M", hub=hub, **dirs, **fast)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Tiny-Q4_K_M.gguf")
    for n in (1, 2, 3, 4):
        assert f"retrying ({n}/5)" in result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    ranges = [r.range for r in hub.downloads_of("Tiny-Q4_K_M.gguf")]
    assert ranges == [None, "bytes=20000-", "bytes=40000-", "bytes=60000-", "bytes=70000-"]
