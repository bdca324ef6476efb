"""`hearth` on a read-only disk, a full disk and a damaged database: real subprocesses.

The disks are real: a small tmpfs mounted as root, filled up or remounted read-only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chats.store import DB_FILE_NAME, Store
from app.core.paths import app_paths
from tests.core.chats.test_repair import build, damage_page_holding
from tests.mounts import fill_disk, remount, tiny_tmpfs

REPO = Path(__file__).resolve().parents[2]


def hearth(
    *args: str, home: Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        input=stdin,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (never a traceback)."""
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tiny_tmpfs(tmp_path / "disk", "2m") as folder:
        yield folder


@pytest.fixture
def used_profile(disk: Path) -> Path:
    """A profile on the small disk that has been used: folders, log and two chats."""
    home = disk / "home"
    paths = app_paths(home).ensure()
    (paths.logs / "hearth.log").write_text("earlier runs\n", encoding="utf-8")
    with Store.open(paths) as store:
        soup = store.create_conversation("Soup")
        store.add_user_message(soup.id, "How long to boil an egg?")
        store.create_conversation("Bread")
    return home


@pytest.fixture
def read_only_profile(used_profile: Path, disk: Path) -> Iterator[Path]:
    remount(disk, read_only=True)
    yield used_profile
    remount(disk, read_only=False)


def test_commands_that_read_work_on_a_read_only_disk(
    read_only_profile: Path, tmp_path: Path
) -> None:
    exported = hearth("export", home=read_only_profile)
    assert exported.returncode == 0, exported.stderr
    titles = sorted(c["title"] for c in json.loads(exported.stdout)["conversations"])
    assert titles == ["Bread", "Soup"]
    assert "Traceback" not in exported.stderr

    out = tmp_path / "chats.md"
    to_file = hearth("export", "-o", str(out), home=read_only_profile)
    assert to_file.returncode == 0, to_file.stderr
    assert "How long to boil an egg?" in out.read_text(encoding="utf-8")

    for args in (("doctor",), ("models", "--hearth-only"), ("repair",)):
        done = hearth(*args, home=read_only_profile)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)


def test_commands_that_write_say_the_folder_is_read_only_in_one_line(
    read_only_profile: Path, tmp_path: Path
) -> None:
    export = tmp_path / "one.json"
    export.write_text(hearth("export", home=read_only_profile).stdout, encoding="utf-8")
    data = app_paths(read_only_profile).data

    imported = hearth("import", str(export), home=read_only_profile)
    assert imported.returncode == 1
    line = one_clean_line(imported)
    assert line.startswith(f"hearth: error: {data} is read-only for Hearth")

    forced = hearth("repair", "--force", home=read_only_profile)
    assert forced.returncode == 1
    assert "is read-only for Hearth" in one_clean_line(forced)


def chat_once(model: Path, home: Path) -> subprocess.CompletedProcess[str]:
    args = ("chat", "--model", str(model), "--max-tokens", "8", "--seed", "1")
    return hearth(*args, home=home, stdin="Say hello.\n", timeout=180)


def test_chat_on_a_full_disk_prints_one_line_about_the_log_and_still_replies(
    used_profile: Path, disk: Path, starter_model: Path, tmp_path: Path
) -> None:
    fill_disk(disk)
    done = chat_once(starter_model, used_profile)
    if done.returncode < 0:  # killed by a signal: is it the disk, or llama.cpp on this CPU?
        roomy = chat_once(starter_model, tmp_path / "roomy")
        if roomy.returncode < 0:
            pytest.skip(
                f"llama.cpp itself dies with signal {-roomy.returncode} on this machine, "
                "with room on the disk too (a build problem, not a storage fault)"
            )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # the reply came
    log = app_paths(used_profile).logs / "hearth.log"
    assert one_clean_line(done) == (
        f"hearth: note: cannot write the log {log} (No space left on device); going on without it"
    )


def test_import_on_a_full_disk_names_the_disk_and_keeps_the_database(
    used_profile: Path, disk: Path, tmp_path: Path
) -> None:
    export = tmp_path / "big.json"
    export.write_text(hearth("export", home=used_profile).stdout, encoding="utf-8")
    document = json.loads(export.read_text(encoding="utf-8"))
    soup = next(c for c in document["conversations"] if c["title"] == "Soup")
    soup["messages"][0]["content"] = "egg " * 100_000
    export.write_text(json.dumps(document), encoding="utf-8")
    fill_disk(disk)

    done = hearth("import", str(export), home=used_profile)
    assert done.returncode == 1
    line = one_clean_line(done)
    assert "is full" in line and str(disk) in line, line
    (disk / "filler").unlink()
    with Store(app_paths(used_profile).data / DB_FILE_NAME) as store:
        assert sorted(c.title for c in store.list_conversations()) == ["Bread", "Soup"]


def test_repair_recovers_a_damaged_database_and_export_works_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = app_paths(home).ensure().data / DB_FILE_NAME
    build(db)
    damage_page_holding(db, "chat2msg1 ")

    done = hearth("repair", home=home)
    assert done.returncode == 0, done.stderr
    assert f"{db} is damaged" in done.stdout
    assert "conversations: 6 recovered" in done.stdout
    assert "messages: 23 recovered, 1 lost" in done.stdout
    kept = next(p for p in db.parent.iterdir() if re.search(r"\.damaged-[0-9-]+$", p.name))
    assert f"The damaged file was kept as {kept}." in done.stdout

    again = hearth("repair", home=home)
    assert again.returncode == 0 and "is intact; nothing to repair" in again.stdout
    exported = hearth("export", home=home)
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(exported.stdout)["conversations"]) == 6
