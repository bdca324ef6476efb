"""Shared widget helpers: the word-wrapped label that remembers its heights."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from app.ui.widgets import WrappingLabel

TEXT = "A legend long enough to wrap over several lines in a narrow column. " * 4


def test_a_wrapping_label_answers_heights_as_qlabel_does_and_follows_its_text(
    qtbot: QtBot,
) -> None:
    label, plain = WrappingLabel(TEXT), QLabel(TEXT)
    plain.setWordWrap(True)
    for widget in (label, plain):
        qtbot.addWidget(widget)
    for width in (120, 300, 120, 900):
        assert label.heightForWidth(width) == plain.heightForWidth(width)
    narrow = label.heightForWidth(120)
    label.setText("short")
    assert label.heightForWidth(120) < narrow  # the new text's height, not a stale one
    label.setText(TEXT)
    assert label.heightForWidth(120) == narrow
    font = QFont(label.font())
    font.setPointSize(font.pointSize() * 2)
    label.setFont(font)
    plain.setFont(font)
    assert label.heightForWidth(120) == plain.heightForWidth(120) > narrow


def test_a_wrapping_label_in_a_layout_gets_the_height_its_text_needs(qtbot: QtBot) -> None:
    column = QWidget()
    qtbot.addWidget(column)
    layout = QVBoxLayout(column)
    label = WrappingLabel(TEXT, column)
    layout.addWidget(label)
    column.resize(200, 600)
    column.show()
    qtbot.waitExposed(column)
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))
    assert label.height() > label.fontMetrics().height() * 2  # wrapped, not clipped
