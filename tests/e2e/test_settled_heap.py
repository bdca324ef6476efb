"""The real app freezes its start-up heap once start-up ends, so that later garbage
collections (on the GUI thread) walk only what came after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def settled(home: Path, *hearth_args: str) -> tuple[int, int]:
    """Run the app until it settles: (objects frozen, objects still tracked)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    env.pop("HEARTH_HOME", None)
    driver = [sys.executable, "-m", "tests.e2e.app_driver", "--report-settled", "--"]
    done = subprocess.run(
        [*driver, "--data-dir", str(home), *hearth_args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SETTLED")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-3000:]
    frozen, tracked = (int(n) for n in lines[0].split()[1:])
    return frozen, tracked


@pytest.mark.timeout(300)
def test_the_app_settles_after_the_first_model_loads(tmp_path: Path, starter_model: Path) -> None:
    frozen, tracked = settled(tmp_path / "home", "--model", str(starter_model))
    assert frozen > 20_000  # modules, classes, the window's widgets, the model's facts
    assert tracked < frozen // 4


@pytest.mark.timeout(300)
def test_the_app_settles_with_no_model_to_open(tmp_path: Path) -> None:
    frozen, tracked = settled(tmp_path / "home")
    assert frozen > 20_000
    assert tracked < frozen // 4
