"""Where the main window was: its geometry, the column widths and which panels were open,
kept in `<config>/window.ini`. A first start opens at a comfortable share of the screen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter

FIRST_START_SHARE = 0.8
"""A first start fills this share of the available screen (at least the minimum below)."""
MIN_FIRST_SIZE = (1000, 640)


@dataclass(frozen=True)
class Panels:
    """Which optional parts of the window are on."""

    sidebar: bool = True
    panel: bool = True
    tokens: bool = False


class WindowLayout:
    """Restores and saves a window's layout in one INI file."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / "window.ini"

    def _settings(self) -> QSettings:
        return QSettings(str(self.path), QSettings.Format.IniFormat)

    def restore(self, window: QMainWindow, splitter: QSplitter) -> Panels:
        """Put the window where it was (or size it for a first start); return its panels."""
        settings = self._settings()
        geometry = settings.value("geometry")
        if geometry is None or not window.restoreGeometry(geometry):
            first_start_size(window)
        state = settings.value("splitter")
        if state is not None:
            splitter.restoreState(state)
        return Panels(
            sidebar=settings.value("sidebar", "true") != "false",
            panel=settings.value("panel", "true") != "false",
            tokens=settings.value("tokens", "false") == "true",
        )

    def save(self, window: QMainWindow, splitter: QSplitter, panels: Panels) -> None:
        """Remember the window's geometry, column widths and panels."""
        settings = self._settings()
        settings.setValue("geometry", window.saveGeometry())
        settings.setValue("splitter", splitter.saveState())
        for name in ("sidebar", "panel", "tokens"):
            settings.setValue(name, "true" if getattr(panels, name) else "false")
        settings.sync()


def first_start_size(window: QMainWindow) -> None:
    """Size the window to a comfortable share of its screen, centred."""
    screen = window.screen()
    if screen is None:
        return
    area = screen.availableGeometry()
    width = min(area.width(), max(MIN_FIRST_SIZE[0], round(area.width() * FIRST_START_SHARE)))
    height = min(area.height(), max(MIN_FIRST_SIZE[1], round(area.height() * FIRST_START_SHARE)))
    window.resize(width, height)
    window.move(area.x() + (area.width() - width) // 2, area.y() + (area.height() - height) // 2)
