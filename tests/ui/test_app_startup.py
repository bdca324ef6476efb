"""What the OS is told about the app (name, version, icon), and a start that fails."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication

import app.ui.app as app_module
from app import __version__
from app.core.machine.gui_readiness import PLUGIN, check_gui
from app.ui.app import platform_plugin_help


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """run_app adds a file handler to the root logger; take it away afterwards."""
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()


def test_the_application_has_hearths_name_version_and_icon(qapp: QApplication) -> None:
    app_module.configure_application(qapp)

    assert qapp.applicationName() == "Hearth"
    assert qapp.applicationDisplayName() == "Hearth"
    assert qapp.applicationVersion() == __version__
    assert qapp.desktopFileName() == "hearth"
    icon = qapp.windowIcon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= {16, 32, 48, 256}


def test_an_unexpected_failure_to_start_names_the_log(
    qapp: QApplication,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_root_logging: None,
) -> None:
    shown: list[str] = []

    def broken_window(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the window factory exploded")

    monkeypatch.setattr(app_module, "MainWindow", broken_window)
    monkeypatch.setattr(
        app_module.QMessageBox, "critical", lambda _parent, _title, text: shown.append(text)
    )

    status = app_module.run_app(data_dir=str(tmp_path / "home"))

    log_file = tmp_path / "home" / "logs" / "hearth.log"
    assert status == 1
    err = capsys.readouterr().err
    assert f"hearth: could not start: the window factory exploded. Details: {log_file}" in err
    assert shown == [f"Hearth could not start: the window factory exploded\n\nDetails: {log_file}"]
    logged = log_file.read_text(encoding="utf-8")
    assert "Hearth could not start" in logged
    assert "Traceback" in logged and "RuntimeError: the window factory exploded" in logged


def test_a_start_with_no_log_folder_keeps_the_traceback_in_a_temp_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_root_logging: None,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setattr(app_module.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(app_module, "current_log_file", lambda: None)
    monkeypatch.setattr(app_module.QApplication, "instance", staticmethod(lambda: None))

    status = app_module.run_app(data_dir=str(blocker))

    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("hearth: could not start: ")
    crash_files = list(tmp_path.glob("hearth-crash-*.log"))
    assert len(crash_files) == 1
    assert f"Details: {crash_files[0]}" in err
    assert "Traceback" in crash_files[0].read_text(encoding="utf-8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd and xcb are Linux's")
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_a_platform_plugin_failure_names_the_missing_libraries(tmp_path: Path) -> None:
    # A real plugin-shaped shared object whose dependency is removed, checked by real ldd.
    (tmp_path / "gone.c").write_text("int gone(void) { return 1; }\n", encoding="utf-8")
    (tmp_path / "plugin.c").write_text("int plugin(void) { return 1; }\n", encoding="utf-8")
    gone = tmp_path / "libxcb-hearth-test.so.1"
    compile_ = ["cc", "-shared", "-fPIC"]
    subprocess.run(
        [*compile_, "-Wl,-soname," + gone.name, "-o", str(gone), str(tmp_path / "gone.c")],
        check=True,
    )
    plugin = tmp_path / "PySide6" / PLUGIN
    plugin.parent.mkdir(parents=True)
    subprocess.run(
        [
            *compile_,
            "-o",
            str(plugin),
            str(tmp_path / "plugin.c"),
            f"-L{tmp_path}",
            "-Wl,--no-as-needed",
            f"-l:{gone.name}",
        ],
        check=True,
    )
    gone.unlink()
    qt_says = 'Could not load the Qt platform plugin "xcb" in "" even though it was found.'
    lines = platform_plugin_help(qt_says, lambda: check_gui(tmp_path / "PySide6"))
    assert lines and "libxcb-hearth-test.so.1" in lines[0] and "cannot load" in lines[0]
    assert platform_plugin_help("some other Qt error", lambda: check_gui(tmp_path)) == []


def test_the_window_without_a_display_fails_with_a_message_not_a_traceback(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "HEARTH_HOME": str(tmp_path), "QT_QPA_PLATFORM": "xcb"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = subprocess.run(
        [sys.executable, "-m", "app"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode != 0
    assert "hearth: Qt error:" in result.stderr and "platform plugin" in result.stderr
    assert "Traceback" not in result.stderr


_POOL_PROBE = """
import os, sys
from pathlib import Path
os.environ["QT_QPA_PLATFORM"] = "offscreen"
if sys.argv[1] == "app":
    from app.ui.app import paint_on_the_gui_thread
    paint_on_the_gui_thread()
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication
qapp = QApplication([])
image = QImage(1400, 1000, QImage.Format.Format_ARGB32_Premultiplied)
painter = QPainter(image)
for _ in range(3):
    painter.fillRect(image.rect(), QColor(30, 60, 90, 128))  # blended spans: 1,000 lines
painter.end()
names = {(Path(t) / "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()}
print("pooled" if any(n.startswith("Thread (pooled)") for n in names) else "none")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names in /proc")
def test_the_app_paints_big_areas_without_qts_helper_threads() -> None:
    # Qt splits a fill of 96 or more lines across its GUI thread pool; the app keeps it on
    # the GUI thread (measured cheaper, and the pool's threads would take llama.cpp's cores).
    def probe(mode: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "QT_NO_GUI_THREADPOOL"}
        done = subprocess.run(
            [sys.executable, "-c", _POOL_PROBE, mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    assert probe("plain Qt") == "pooled"  # the probe sees the pool when Qt uses it
    assert probe("app") == "none"
