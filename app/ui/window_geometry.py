"""Window sizes: a comfortable share of the screen on a first start, the person's own
geometry after that (kept in an INI file in the config dir, like the main window's)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

FIRST_START_FRACTION = 0.8
"""Share of the available screen (width and height) a window takes on a first start."""
MINIMUM_FIRST_SIZE = QSize(900, 600)


def first_start_size(available: QSize, fraction: float = FIRST_START_FRACTION) -> QSize:
    """`fraction` of the available screen, at least `MINIMUM_FIRST_SIZE`, never larger
    than the screen itself."""
    width = max(int(available.width() * fraction), MINIMUM_FIRST_SIZE.width())
    height = max(int(available.height() * fraction), MINIMUM_FIRST_SIZE.height())
    return QSize(min(width, available.width()), min(height, available.height()))


class WindowGeometry:
    """Restores and saves one window's geometry in `ini_path` under `key`."""

    def __init__(self, ini_path: Path, key: str = "geometry") -> None:
        self._ini_path = ini_path
        self._key = key

    def _settings(self) -> QSettings:
        return QSettings(str(self._ini_path), QSettings.Format.IniFormat)

    def restore(self, window: QWidget, fraction: float = FIRST_START_FRACTION) -> bool:
        """Put the window where the person left it; on a first start (or if the saved
        geometry is unusable) size it to `fraction` of its screen. True if restored."""
        saved = self._settings().value(self._key)
        if isinstance(saved, QByteArray) and not saved.isEmpty() and window.restoreGeometry(saved):
            return True
        screen = window.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            window.resize(first_start_size(screen.availableGeometry().size(), fraction))
        return False

    def save(self, window: QWidget) -> None:
        """Remember the window's geometry."""
        settings = self._settings()
        settings.setValue(self._key, window.saveGeometry())
        settings.sync()
