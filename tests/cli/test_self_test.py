"""`hearth --self-test` as a person (or packaging/smoke) runs it: real model, real window."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = ("icon", "catalog", "llama.cpp", "model", "generate", "window")
LINE = re.compile(r"^(ok|FAILED)\s+(\S+)\s+(.*) \((\d+\.\d\d) s\)$")


def self_test(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    env.pop("QT_QPA_PLATFORM", None)  # the self-test picks offscreen itself
    return subprocess.run(
        [sys.executable, "-m", "app", "--self-test", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def check_lines(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail), from the lines that report a check."""
    found = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(2)] = (match.group(1), match.group(3))
    return found


def test_self_test_passes_on_the_starter_model(starter_model: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    result = self_test("--model", str(starter_model), home=home)

    assert result.returncode == 0, result.stdout + result.stderr
    checks = check_lines(result.stdout)
    assert list(checks) == list(CHECKS), result.stdout
    assert all(status == "ok" for status, _ in checks.values()), result.stdout
    assert "SmolLM2-135M-Instruct.Q4_1.gguf: llama" in checks["model"][1]
    assert re.match(r"\d+ tokens at \d+ tok/s", checks["generate"][1])
    assert "model loaded by the worker thread" in checks["window"][1]
    assert "offscreen" in checks["window"][1]
    assert result.stdout.splitlines()[-1].startswith("self-test passed: 6 checks in ")
    # The window ran on a throwaway folder: the person's data holds only the log.
    assert sorted(p.name for p in home.iterdir()) == ["logs"]
    assert "Traceback" not in result.stderr


def test_self_test_uses_the_installed_starter_by_default(
    starter_model: Path, tmp_path: Path
) -> None:
    models = tmp_path / "home" / "data" / "models"
    models.mkdir(parents=True)
    (models / starter_model.name).symlink_to(starter_model)

    result = self_test(home=tmp_path / "home")

    assert result.returncode == 0, result.stdout + result.stderr
    assert check_lines(result.stdout)["model"][1].startswith(starter_model.name)


def test_a_corrupt_model_fails_with_a_line_naming_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model at all" * 100)

    result = self_test("--model", str(bad), home=tmp_path / "home")

    assert result.returncode == 1
    checks = check_lines(result.stdout)
    status, detail = checks["model"]
    assert status == "FAILED"
    assert "broken.gguf" in detail and "not a GGUF" in detail
    assert checks["generate"] == ("FAILED", "skipped: no model loaded")
    assert checks["icon"][0] == checks["catalog"][0] == checks["window"][0] == "ok"
    assert "self-test FAILED: 2 of 6 checks failed" in result.stdout
    assert str(tmp_path / "home" / "logs" / "hearth.log") in result.stdout


def test_a_missing_starter_says_how_to_get_it(tmp_path: Path) -> None:
    result = self_test(home=tmp_path / "home")

    assert result.returncode == 1
    status, detail = check_lines(result.stdout)["model"]
    assert status == "FAILED"
    assert "hearth starter" in detail and "--model PATH" in detail


@pytest.mark.parametrize("argv", [["--self-test", "doctor"]])
def test_self_test_takes_no_subcommand(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(argv) == 2
    assert "--self-test takes no subcommand" in capsys.readouterr().err
