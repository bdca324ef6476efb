"""Reading colours off grabbed widgets, for tests of how something looks."""

from __future__ import annotations

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QAbstractScrollArea
from pytestqt.qtbot import QtBot


def assert_flat_scroll_bar(
    qtbot: QtBot, area: QAbstractScrollArea, groove: QPalette.ColorRole
) -> None:
    """`area`'s vertical bar, once it can scroll and is scrolled to its end, is Hearth's
    flat handle: the top of the bar (empty there) exactly the `groove` colour of its
    palette (no arrow, no gradient) and the handle exactly its mid colour."""
    bar = area.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=10_000)
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    image = bar.grab().toImage()
    middle = image.width() // 2
    colours = bar.palette()
    assert image.pixelColor(middle, 4).rgb() == colours.color(groove).rgb()
    handle = image.pixelColor(middle, image.height() - 20)
    assert handle.rgb() == colours.color(QPalette.ColorRole.Mid).rgb()
