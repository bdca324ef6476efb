"""`hearth doctor` as a person runs it, on this machine's CPU-only llama.cpp build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def hearth(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HEARTH_HOME": str(home)},
        timeout=120,
        check=False,
    )


def test_doctor_json_parses_and_describes_the_cpu_build(tmp_path: Path) -> None:
    result = hearth("doctor", "--json", home=tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["gpu_offload"] is False
    assert any(device["type"] == "CPU" for device in report["devices"])
    assert report["ram_total"] >= report["ram_available"] > 0
    assert report["cpu_features"]
    assert report["diagnosis"]["can_use_gpu"] is False
    assert "CPU-only" in report["diagnosis"]["summary"]
    gui = report["gui"]
    assert gui["ready"] == (gui["missing"] == [])
    if sys.platform.startswith("linux"):
        assert gui["checked"] and gui["plugin"].endswith("libqxcb.so")
        for package in gui["debian_packages"]:
            assert package in gui["commands"]["Debian/Ubuntu"]


def test_doctor_plain_output_mentions_the_cpu(tmp_path: Path) -> None:
    result = hearth("doctor", home=tmp_path)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[CPU]" in out
    assert "GPU offload: no (CPU-only build)" in out
    assert "CPU features:" in out
    gui_lines = [line for line in out.splitlines() if line.startswith("GUI:")]
    assert len(gui_lines) == 1
    if not gui_lines[0].startswith(("GUI: ready", "GUI: not checked")):
        assert "missing libraries" in gui_lines[0] and "sudo apt install" in out
    assert "Traceback" not in result.stderr
