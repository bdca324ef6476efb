"""`hearth serve` refusals: one line, no traceback, before loading anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def serve(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_port_in_use_is_one_line(starter_model: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = serve("--model", str(starter_model), "--port", port, home=tmp_path)
    assert result.returncode == 1
    assert "Cannot listen on 127.0.0.1:" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr
    assert "loading" not in result.stdout


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    result = serve("--port", "70000", home=tmp_path)
    assert result.returncode == 2 and "--port must be between" in result.stderr
    result = serve("--parallel", "0", home=tmp_path)
    assert result.returncode == 2 and "--parallel" in result.stderr
    key = tmp_path / "empty-key"
    key.write_text("\n")
    result = serve("--api-key-file", str(key), "--model", "x.gguf", home=tmp_path)
    assert result.returncode != 0 and "is empty" in result.stderr
