"""The `hearth` command as a person (or a script) runs it: real subprocesses, real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.chat import JSON_KEYS

FAST = ["--temperature", "0", "--max-tokens", "12", "--threads", "2", "--ctx", "1024"]


def hearth(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"reply"')]


def test_ask_streams_the_reply_then_one_json_line(starter_model: Path, tmp_path: Path) -> None:
    result = hearth(
        "ask", "--model", str(starter_model), *FAST, "--json", "Say hello.", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert list(record) == list(JSON_KEYS)
    assert record["stop_reason"] in ("end_of_turn", "max_tokens")
    assert record["completion_tokens"] and record["prompt_tokens"]
    assert result.stdout.startswith(str(record["reply"]))
    assert "Traceback" not in result.stderr


def test_ask_seed_flag_is_reported_and_reproducible(starter_model: Path, tmp_path: Path) -> None:
    args = [
        "ask",
        "--model",
        str(starter_model),
        "--temperature",
        "1.2",
        "--seed",
        "42",
        "--max-tokens",
        "10",
        "--threads",
        "2",
        "--ctx",
        "1024",
        "--json",
        "Name a fruit.",
    ]
    first, second = (json_lines(hearth(*args, home=tmp_path).stdout)[0] for _ in range(2))
    assert first["seed"] == second["seed"] == 42
    assert first["reply"] == second["reply"]


def test_chat_keeps_the_model_and_reuses_the_cache(starter_model: Path, tmp_path: Path) -> None:
    result = hearth(
        "chat",
        "--model",
        str(starter_model),
        *FAST,
        "--json",
        "--system",
        "Be brief.",
        home=tmp_path,
        stdin="Hi there.\nWhat did I just say?\n",
    )
    assert result.returncode == 0, result.stderr
    first, second = json_lines(result.stdout)
    assert second["cached_tokens"] >= first["prompt_tokens"]  # type: ignore[operator]
    assert second["prompt_tokens"] > first["prompt_tokens"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "2"], "top-p"),
        (["--top-k", "abc"], "--top-k"),
        (["--mirostat", "3"], "mirostat"),
        (["--seed", "-5"], "seed"),
        (["--nonsense"], "--nonsense"),
        (["--model", "/no/such/model.gguf"], "model.gguf"),
    ],
)
def test_bad_flags_exit_nonzero_with_one_line(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    result = hearth("ask", *args, "hello", home=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hearth: error:")
    assert expected in lines[0]


def test_missing_starter_model_says_how_to_get_it(tmp_path: Path) -> None:
    result = hearth("ask", "hello", home=tmp_path / "empty")
    assert result.returncode == 1
    assert "hearth starter" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_not_a_gguf_is_refused_by_name(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("these are my notes, not a model\n" * 20)
    result = hearth("ask", "--model", str(bogus), "hello", home=tmp_path)
    assert result.returncode == 1
    assert "notes.gguf" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("hearth ")
