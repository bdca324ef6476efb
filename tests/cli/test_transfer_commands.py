"""`hearth export` and `hearth import` as a person runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.chats.store import DB_FILE_NAME, Store
from app.core.inference.sampling import SamplingSettings
from app.core.paths import app_paths
from tests.core.chats.test_export_import import comparable


def hearth(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )


def open_store(home: Path) -> Store:
    return Store(app_paths(home).data / DB_FILE_NAME)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A profile with two conversations, one of them branched."""
    home = tmp_path / "home"
    with open_store(home) as store:
        soup = store.create_conversation("Soup", system_prompt="Be a chef.")
        question = store.add_user_message(soup.id, "How long to boil an egg?")
        for answer, temperature in (("Seven minutes.", 0.2), ("About 7 min.", 1.0)):
            reply = store.start_reply(
                question.id, model="tiny.gguf", settings=SamplingSettings(temperature=temperature)
            )
            store.finish_reply(reply.id, answer, "complete", seed=11)
        store.create_conversation("Empty")
    return home


def test_export_then_import_into_another_profile_round_trips(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    exported = hearth("export", "-o", str(out), home=home)
    assert exported.returncode == 0, exported.stderr
    assert f"Exported 2 conversation(s) to {out}" in exported.stderr
    first = json.loads(out.read_text(encoding="utf-8"))

    fresh = tmp_path / "fresh"
    imported = hearth("import", str(out), home=fresh)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(f"Imported 2 conversation(s), 3 message(s), from {out}")

    again = hearth("export", "--all", "--format", "json", home=fresh)
    assert again.returncode == 0, again.stderr
    assert comparable(json.loads(again.stdout)) == comparable(first)


def test_export_one_conversation_as_markdown(home: Path, tmp_path: Path) -> None:
    with open_store(home) as store:
        soup_id = next(c.id for c in store.list_conversations() if c.title == "Soup")
    result = hearth("export", "--conversation", str(soup_id), "--format", "md", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Soup\n")
    assert "About 7 min." in result.stdout and "Seven minutes." not in result.stdout
    assert "Empty" not in result.stdout

    out = tmp_path / "soup.md"
    by_suffix = hearth("export", "--conversation", str(soup_id), "-o", str(out), home=home)
    assert by_suffix.returncode == 0, by_suffix.stderr
    assert out.read_text(encoding="utf-8") == result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not valid JSON"),
        ('{"format": "something else"}', "is not a Hearth export"),
    ],
)
def test_bad_import_files_fail_in_one_line_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "chats.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = hearth("import", str(path), home=tmp_path / "home")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("hearth: error: ") and str(path) in line and message in line
    assert "Traceback" not in result.stderr


def test_export_of_an_unknown_conversation_says_so(home: Path) -> None:
    result = hearth("export", "--conversation", "999", home=home)
    assert result.returncode == 1
    assert "no conversation with id 999" in result.stderr
    assert result.stdout == ""


def test_one_conversation_and_all_exclude_each_other(home: Path) -> None:
    result = hearth("export", "--conversation", "1", "--all", home=home)
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_export_skips_a_damaged_conversation_says_so_and_writes_the_rest(home: Path) -> None:
    with open_store(home) as store, store.transaction() as conn:
        conn.execute("UPDATE messages SET stats = '{broken' WHERE role = 'assistant'")
        conn.execute(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES ('Ok', 1, 1)"
        )
    result = hearth("export", "--all", home=home)
    assert result.returncode == 0, result.stderr
    titles = [c["title"] for c in json.loads(result.stdout)["conversations"]]
    assert "Soup" not in titles and {"Empty", "Ok"} <= set(titles)
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith("hearth: warning: damaged data skipped: conversation ")
    assert "Traceback" not in result.stderr
