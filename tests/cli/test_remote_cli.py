"""`hearth ask --backend`, `hearth connections` and `hearth models --remote` against a real
`hearth serve` on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.server.conftest import Served, start_serve, stop_serve


@pytest.fixture(scope="module")
def keyed(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("cli-remote")
    key_file = home.parent / "key.txt"
    key_file.write_text("s3cret-key\n")
    server = start_serve(home, starter_model, "--api-key-file", str(key_file))
    yield server
    stop_serve(server)


def hearth(home: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    if key is not None:
        env["REMOTE_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_ask_with_a_backend_url_streams_and_reports_stats(keyed: Served, tmp_path: Path) -> None:
    done = hearth(
        tmp_path, "ask", "--backend", keyed.url, "--api-key-env", "REMOTE_KEY", "--model",
        keyed.model, "--max-tokens", "8", "--seed", "3", "--json", "--logprobs", "2", "Hi",
        key="s3cret-key",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["completion_tokens"] == 8 and record["ttft_ms"] > 0
    assert all(len(t["top_logprobs"]) == 2 for t in record["logprobs"]["content"])
    wrong = hearth(tmp_path, "ask", "--backend", keyed.url, "--api-key-env", "REMOTE_KEY", "Hi",
                   key="wrong")  # fmt: skip
    assert wrong.returncode == 1 and "refused the API key (401)" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_connections_and_models_remote_keep_the_key_out_of_files_and_logs(
    keyed: Served, tmp_path: Path
) -> None:
    added = hearth(tmp_path, "connections", "add", "box", keyed.url, "--api-key-env",
                   "REMOTE_KEY", key="s3cret-key")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "leave this machine" in added.stderr
    listed = hearth(tmp_path, "models", "--remote")
    assert listed.returncode == 0 and f"box  {keyed.model}  (hearth)" in listed.stdout
    tested = hearth(tmp_path, "connections", "test", "box")
    assert "round trip" in tested.stdout and keyed.model in tested.stdout
    asked = hearth(tmp_path, "ask", "--backend", "box", "--max-tokens", "3", "Hi")
    assert asked.returncode == 0, asked.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "connection-keys.json":
            assert b"s3cret-key" not in path.read_bytes(), path
    missing = hearth(tmp_path, "ask", "--backend", "nope", "Hi")
    assert missing.returncode == 1 and "no connection named 'nope'" in missing.stderr
