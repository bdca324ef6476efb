"""Where the main window was: its geometry, the column widths and which panels were open,
kept in `<config>/window.ini`. A first start opens at a comfortable share of the screen
(`WindowGeometry`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter

from app.ui.window_geometry import WindowGeometry


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
        WindowGeometry(self.path).restore(window)
        settings = self._settings()
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
        WindowGeometry(self.path).save(window)
        settings = self._settings()
        settings.setValue("splitter", splitter.saveState())
        for name in ("sidebar", "panel", "tokens"):
            settings.setValue(name, "true" if getattr(panels, name) else "false")
        settings.sync()
