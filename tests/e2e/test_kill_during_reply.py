"""Kill -9 the real app mid-reply: the chat survives, the partial reply is marked interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.chats.store import DB_FILE_NAME, Store
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import unpack
from app.core.paths import app_paths

REPO = Path(__file__).resolve().parents[2]
COUNT = "Count from 1 to 300, one number per line."
LONG = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=400)
DEADLINE_S = 120


def streaming_text(db: Path) -> str:
    """The text of a reply the app is streaming now ("" if none yet), read as another process."""
    if not db.exists():
        return ""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT content FROM messages WHERE role = 'assistant' AND status = 'streaming'"
                " AND length(content) > 0 ORDER BY id DESC LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return ""
    return str(row[0]) if row else ""


def qt_warnings(home: Path) -> list[str]:
    """Qt's warnings and errors in the app's log (Qt messages go to the `qt` logger)."""
    log = app_paths(home).logs / "hearth.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [
        line
        for line in lines
        if " qt: " in line and any(f" {level} " in line for level in ("WARNING", "ERROR"))
    ]


def start_app(home: Path, model: Path, *driver_args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    env.pop("HEARTH_HOME", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.e2e.app_driver",
            *driver_args,
            "--",
            "--data-dir",
            str(home),
            "--model",
            str(model),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(300)
def test_kill_during_reply_keeps_the_partial_reply_marked_interrupted(
    tmp_path: Path, starter_model: Path
) -> None:
    home = tmp_path / "home"
    paths = app_paths(home).ensure()
    with Store.open(paths) as store:
        store.set_default_settings(LONG)
    db = paths.data / DB_FILE_NAME

    app = start_app(home, starter_model, "--send", COUNT)
    try:
        deadline = time.monotonic() + DEADLINE_S
        partial = ""
        while time.monotonic() < deadline and app.poll() is None:
            partial = streaming_text(db)
            if len(partial) >= 8:  # a few numbers in, well before the end
                break
            # Wait on the app itself between reads of its database: returns at once if it dies.
            with contextlib.suppress(subprocess.TimeoutExpired):
                app.wait(timeout=0.1)
        assert app.poll() is None, app.communicate()[1][-3000:]
        assert partial, "no streaming reply reached the database in time"
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(timeout=30)
        out, _ = app.communicate()
    assert app.returncode == -signal.SIGKILL
    assert "SENT" in out
    assert qt_warnings(home) == []

    with Store.open(paths) as store:
        assert store.mark_interrupted_replies() == 1
        (conversation,) = store.list_conversations()
        user, reply = store.active_path(conversation.id)
        assert user.content == COUNT
        assert reply.status == "interrupted"
        assert reply.content.startswith(partial)
        assert reply.settings == LONG
        assert store.search("Count")  # the chat is found again
        data = store.token_data(reply.id)
    # The token data up to the last save survived with the text: the saved records spell
    # out the saved text (they may run one batch ahead of it, never behind).
    assert data is not None and len(data) > 0
    assert b"".join(r.piece for r in data.records).decode("utf-8").startswith(reply.content)
    assert all(len(r.top) == 10 and r.logprob <= 0 for r in data.records)


@pytest.mark.timeout(300)
def test_the_app_starts_again_after_the_kill_and_shows_the_chat(
    tmp_path: Path, starter_model: Path
) -> None:
    """After a kill, the next start marks the reply interrupted itself and exits cleanly."""
    home = tmp_path / "home"
    paths = app_paths(home).ensure()
    with Store.open(paths) as store:
        store.set_default_settings(LONG)
        chat = store.create_conversation("Counting")
        user = store.add_user_message(chat.id, COUNT)
        reply = store.start_reply(user.id, model=starter_model.name, settings=LONG)
        store.update_streaming_reply(reply.id, "1\n2\n3\n")  # as a killed app leaves it
    app = start_app(home, starter_model, "--mark-shown", "--close-after-shown")
    out, err = app.communicate(timeout=DEADLINE_S)
    assert app.returncode == 0, err[-3000:]
    assert "WINDOW_SHOWN" in out
    assert "Qt error" not in err
    assert qt_warnings(home) == []
    with Store.open(paths) as store:
        again = store.message(reply.id)
    assert again.status == "interrupted" and again.content == "1\n2\n3\n"


def saved_tokens(db: Path) -> int:
    """How many tokens of a streaming reply's token data the saves have written so far."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(
                "SELECT t.data FROM token_data t JOIN messages m ON m.id = t.message_id"
                " WHERE m.status = 'streaming'"
            ).fetchall()
    except sqlite3.Error:
        return 0
    return sum(len(unpack(bytes(row[0])).records) for row in rows)


@pytest.mark.timeout(300)
def test_kill_during_reply_keeps_the_token_data_up_to_the_last_save_with_the_text(
    tmp_path: Path, starter_model: Path
) -> None:
    """The real worker and ReplyWriter in a child process (the window's wiring without the
    window): after kill -9, the saved token records are exactly the saved text's tokens."""
    home = tmp_path / "home"
    paths = app_paths(home).ensure()
    db = paths.data / DB_FILE_NAME
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HEARTH_HOME", None)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.e2e.reply_driver",
            "--data-dir",
            str(home),
            "--model",
            str(starter_model),
            "--prompt",
            COUNT,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and child.poll() is None:
            if saved_tokens(db) >= 20:  # a few saves in, well before the end
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.1)
        assert child.poll() is None, child.communicate()[1][-3000:]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert "SENT" in out

    with Store.open(paths) as store:
        assert store.mark_interrupted_replies() == 1
        (conversation,) = store.list_conversations()
        _user, reply = store.active_path(conversation.id)
        assert reply.status == "interrupted"
        data = store.token_data(reply.id)
    assert data is not None and len(data) >= 20
    pieces = b"".join(r.piece for r in data.records).decode("utf-8")
    # Text and records were saved together: the text is the records' text, less at most
    # what the reply held back at that moment (a possible stop string).
    assert pieces.startswith(reply.content)
    assert len(pieces) - len(reply.content) <= 8
    assert reply.content.startswith("1")
    assert all(len(r.top) == 10 and r.top[0].token_id == r.token_id for r in data.records)
    assert data.changes[0].settings.temperature == 0.0
