"""One app per data folder: the second launch brings the first window forward and exits 0;
what a crashed instance left behind does not block the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QLockFile
from PySide6.QtNetwork import QLocalSocket
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.ui.single_instance import LOCK_FILE_NAME, SingleInstance, server_name

TIMEOUT_MS = 60_000


def test_a_second_claim_asks_the_first_to_raise_its_window(qtbot: QtBot, tmp_path: Path) -> None:
    first = SingleInstance(tmp_path)
    assert first.claim() and first.is_primary
    window = QWidget()
    qtbot.addWidget(window)
    first.show_window_on_request(window)
    try:
        second = SingleInstance(tmp_path / "." / "")  # another spelling of the same folder
        assert second.name == first.name
        with qtbot.waitSignal(first.activationRequested, timeout=TIMEOUT_MS):
            assert not second.claim()
        assert not second.unresponsive and not second.is_primary
        qtbot.waitUntil(window.isVisible, timeout=TIMEOUT_MS)
        other = SingleInstance(tmp_path / "elsewhere")
        (tmp_path / "elsewhere").mkdir()
        assert other.claim() and other.name != first.name  # another folder: its own app
        other.release()
    finally:
        first.release()
    assert SingleInstance(tmp_path).claim()  # released: the next one may start


CRASHING_APP = """
import os, sys
from pathlib import Path
from PySide6.QtCore import QCoreApplication
from app.ui.single_instance import SingleInstance
app = QCoreApplication([])
instance = SingleInstance(Path(sys.argv[1]))
assert instance.claim()
print("claimed", flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="Unix socket files and SIGKILL")
def test_what_a_killed_instance_left_is_cleared(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_APP, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL and "claimed" in crashed.stdout
    assert (tmp_path / LOCK_FILE_NAME).exists()  # left behind, with a dead pid
    name = server_name(tmp_path)
    assert not _connectable(name)

    instance = SingleInstance(tmp_path)
    try:
        assert instance.claim() and instance.is_primary
        assert _connectable(name)  # listening again on the same name
    finally:
        instance.release()


def test_a_locked_folder_whose_owner_does_not_answer_is_named(tmp_path: Path) -> None:
    holder = QLockFile(str(tmp_path / LOCK_FILE_NAME))
    assert holder.tryLock(0)  # held by this live process, with no server
    try:
        instance = SingleInstance(tmp_path)
        assert not instance.claim() and instance.unresponsive
    finally:
        holder.unlock()


def _connectable(name: str) -> bool:
    client = QLocalSocket()
    client.connectToServer(name)
    ok = client.waitForConnected(200)
    client.abort()
    return ok


def test_two_real_app_processes_on_one_data_folder(tmp_path: Path) -> None:
    home = tmp_path / "hearth"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HEARTH_HOME": str(home)}
    command = [sys.executable, "-m", "app"]
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        name = server_name(home / "data") if (home / "data").exists() else None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            data = next((p.parent for p in home.rglob(LOCK_FILE_NAME)), None)
            name = server_name(data) if data is not None else None
            if name is not None and _connectable(name):
                break
            time.sleep(0.1)
        assert first.poll() is None and name is not None, "the first app did not start"

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr and "brought forward" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first app is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
