"""tests/bench/gpu_check.sh as far as a machine without a GPU can run it: its arguments,
its dry run, and its CPU path printing the summary table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "bench" / "gpu_check.sh"


def gpu_check(*args: str, out: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--base-python", sys.executable, "--out", str(out), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rounds", "x"], "--rounds must be a positive whole number (got 'x')"),
        (["--tokens", "0"], "--tokens must be a positive whole number (got '0')"),
        (["--rounds"], "--rounds needs a value"),
        (["--models", "llama"], "--models takes smollm2 and/or gemma3"),
        (["--steps", "doctor,bogus"], "unknown step 'bogus'"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_named(
    args: list[str], said: str, tmp_path: Path
) -> None:
    done = gpu_check("--cpu-only", *args, out=tmp_path)
    assert done.returncode == 2
    assert said in done.stderr
    assert "summary" not in done.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a driver")
def test_without_an_nvidia_driver_it_says_so_and_how_to_check_anyway(tmp_path: Path) -> None:
    done = gpu_check(out=tmp_path)
    assert done.returncode == 2
    assert "nvidia-smi not found" in done.stderr and "--cpu-only" in done.stderr


def test_dry_run_prints_every_step_and_the_table(tmp_path: Path) -> None:
    done = gpu_check("--cpu-only", "--dry-run", "--rounds", "3", out=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "-m pytest -q tests/core/machine/test_memory_vs_llama.py" in done.stdout
    assert "-m tests.bench.host_time --models smollm2,gemma3 --rounds 3" in done.stdout
    table = done.stdout.split("== summary", 1)[1]
    assert re.search(r"engine vs bare llama\.cpp \(layers 0\)\s+dry run", table)
    assert "GPU vs CPU" in table and "skipped (--cpu-only)" in table


def test_cpu_path_runs_doctor_and_the_engine_bench_and_prints_the_table(
    starter_model: Path, tmp_path: Path
) -> None:
    done = gpu_check(
        "--cpu-only",
        "--quick",
        "--models",
        "smollm2",
        "--steps",
        "doctor,engine",
        out=tmp_path,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.split("== summary", 1)[1]
    assert re.search(r"hearth doctor --json .*ok in \d+ s", table)
    assert "gpu_offload" in table
    assert re.search(r"engine vs bare llama\.cpp \(layers 0\)\s+ok in \d+ s", table)
    for what in ("decode vs bare, engine auto", "prefill vs bare, engine auto"):
        assert re.search(re.escape(what) + r"\s+\d+\.\d{3} \(", table), what
    assert re.search(r"host µs/token, bare loop\s+\d+\.\d", table)
    assert (tmp_path / "doctor.json").stat().st_size > 0
