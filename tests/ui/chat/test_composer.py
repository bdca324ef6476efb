"""The composer: keys, Send/Stop, the debounced draft, the token label and context meter."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from app.core.inference.messages import Message
from app.ui.chat.composer import (
    LEVEL_COLOURS,
    Composer,
    ContextMeter,
    describe_dropped,
    meter_level,
)

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


@pytest.fixture
def composer(qtbot: QtBot) -> Composer:
    widget = Composer()
    qtbot.addWidget(widget)
    widget.resize(700, 160)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def child(widget: QWidget, kind: type[QWidget], name: str) -> QWidget:
    found = widget.findChild(kind, name)
    assert isinstance(found, kind), name
    return found


def edit_of(composer: Composer) -> QPlainTextEdit:
    edit = child(composer, QPlainTextEdit, "composer")
    assert isinstance(edit, QPlainTextEdit)
    return edit


def button(composer: Composer, name: str) -> QPushButton:
    found = child(composer, QPushButton, name)
    assert isinstance(found, QPushButton)
    return found


def test_every_control_has_an_object_and_accessible_name(composer: Composer) -> None:
    for name, kind in (
        ("composer", QPlainTextEdit),
        ("sendButton", QPushButton),
        ("stopButton", QPushButton),
        ("draftTokenLabel", QLabel),
        ("contextMeter", ContextMeter),
    ):
        assert child(composer, kind, name).accessibleName(), name
    for kind in (QPushButton, QPlainTextEdit):
        for widget in composer.findChildren(kind):
            assert widget.objectName() and widget.accessibleName(), widget


def test_enter_sends_and_the_text_stays_until_taken(qtbot: QtBot, composer: Composer) -> None:
    edit = edit_of(composer)
    qtbot.keyClicks(edit, "Hello there")
    with qtbot.waitSignal(composer.sendRequested, timeout=1000) as blocker:
        qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert blocker.args == ["Hello there"]
    assert composer.text() == "Hello there"
    assert composer.take_text() == "Hello there"
    assert edit.toPlainText() == ""


def test_keypad_enter_and_the_send_button_send_too(qtbot: QtBot, composer: Composer) -> None:
    edit = edit_of(composer)
    composer.set_text("one")
    with qtbot.waitSignal(composer.sendRequested, timeout=1000) as blocker:
        qtbot.keyClick(edit, Qt.Key.Key_Enter)
    assert blocker.args == ["one"]
    with qtbot.waitSignal(composer.sendRequested, timeout=1000) as blocker:
        qtbot.mouseClick(button(composer, "sendButton"), Qt.MouseButton.LeftButton)
    assert blocker.args == ["one"]


def test_shift_enter_adds_a_line_without_sending(qtbot: QtBot, composer: Composer) -> None:
    edit = edit_of(composer)
    sent: list[str] = []
    composer.sendRequested.connect(sent.append)
    qtbot.keyClicks(edit, "first")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "second")
    assert edit.toPlainText() == "first\nsecond"
    assert sent == []


def test_blank_drafts_and_refused_sends_do_not_send(qtbot: QtBot, composer: Composer) -> None:
    edit = edit_of(composer)
    sent: list[str] = []
    composer.sendRequested.connect(sent.append)
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    composer.set_text("   \n ")
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert not button(composer, "sendButton").isEnabled() or sent == []
    composer.set_text("hi")
    composer.set_send_enabled(False)
    assert not button(composer, "sendButton").isEnabled()
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert sent == []
    composer.set_send_enabled(True)
    assert button(composer, "sendButton").isEnabled()


def test_busy_swaps_send_for_stop_and_esc_stops(qtbot: QtBot, composer: Composer) -> None:
    edit = edit_of(composer)
    send, stop = button(composer, "sendButton"), button(composer, "stopButton")
    composer.set_text("next question")
    assert send.isVisible() and send.isEnabled()
    assert not stop.isVisible() and not stop.isEnabled()

    stops: list[bool] = []
    sent: list[str] = []
    composer.stopRequested.connect(lambda: stops.append(True))
    composer.sendRequested.connect(sent.append)
    qtbot.keyClick(edit, Qt.Key.Key_Escape)  # idle: Esc does nothing
    assert stops == []

    composer.set_busy(True)
    assert composer.is_busy
    assert not send.isVisible() and not send.isEnabled()
    assert stop.isVisible() and stop.isEnabled()
    qtbot.keyClick(edit, Qt.Key.Key_Return)  # busy: Enter does not send
    assert sent == []
    with qtbot.waitSignal(composer.stopRequested, timeout=1000):
        qtbot.keyClick(edit, Qt.Key.Key_Escape)
    with qtbot.waitSignal(composer.stopRequested, timeout=1000):
        qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert edit.toPlainText() == "next question"  # typing ahead while busy is kept

    composer.set_busy(False)
    assert send.isVisible() and send.isEnabled()
    assert not stop.isVisible()


def test_a_burst_of_typing_emits_the_draft_once(qtbot: QtBot, composer: Composer) -> None:
    drafts: list[str] = []
    composer.draftChanged.connect(drafts.append)
    qtbot.keyClicks(edit_of(composer), "a burst of typing")
    assert drafts == []  # nothing while typing
    with qtbot.waitSignal(composer.draftChanged, timeout=2000):
        pass
    assert drafts == ["a burst of typing"]
    assert not composer._debounce.isActive()

    with qtbot.waitSignal(composer.draftChanged, timeout=2000) as blocker:
        assert composer.take_text() == "a burst of typing"
    assert blocker.args == [""]
    assert drafts == ["a burst of typing", ""]


def test_the_draft_token_label(composer: Composer) -> None:
    label = child(composer, QLabel, "draftTokenLabel")
    assert isinstance(label, QLabel)
    composer.set_draft_tokens(None)
    assert label.text() == "… tokens"
    composer.set_draft_tokens(1)
    assert label.text() == "1 token"
    composer.set_draft_tokens(1234)
    assert label.text() == "1,234 tokens"


def test_meter_levels_and_colours(composer: Composer) -> None:
    meter = composer.meter
    assert child(composer, ContextMeter, "contextMeter") is meter
    highlight = meter.palette().color(QPalette.ColorRole.Highlight)

    composer.set_context_usage(100, 1000)
    assert (meter.level, meter.property("level")) == ("ok", "ok")
    assert meter.colour() == highlight
    assert meter.value() == 100 and meter.maximum() == 1000
    assert "100 of 1,000 tokens" in meter.toolTip()

    composer.set_context_usage(850, 1000)
    assert meter.level == "warn"
    assert meter.colour() == QColor(LEVEL_COLOURS["warn"])
    assert LEVEL_COLOURS["warn"] in meter.styleSheet()

    composer.set_context_usage(1001, 1000, "To fit, the oldest 2 messages would be left out")
    assert meter.level == "over"
    assert meter.colour() == QColor(LEVEL_COLOURS["over"])
    assert LEVEL_COLOURS["over"] in meter.styleSheet()
    assert meter.value() == 1000
    assert "the oldest 2 messages would be left out" in meter.toolTip()

    composer.set_context_usage(0, 0)
    assert meter.level == "ok"
    assert "no model" in meter.text().lower()


def test_meter_level_thresholds() -> None:
    assert meter_level(849, 1000) == "ok"
    assert meter_level(850, 1000) == "warn"
    assert meter_level(1000, 1000) == "warn"
    assert meter_level(1001, 1000) == "over"
    assert meter_level(5, 0) == "ok"


def test_describe_dropped_lists_the_messages_left_out() -> None:
    messages = [
        Message("system", "Be brief."),
        Message("user", "What is the tallest mountain on Earth, and how tall is it exactly?"),
        Message("assistant", "Everest."),
        Message("user", "Thanks"),
    ]
    note = describe_dropped((1, 2), messages)
    assert note.startswith("To fit, the oldest 2 messages would be left out")
    assert "• You: What is the tallest mountain" in note and "…" in note
    assert "• Assistant: Everest." in note
    assert describe_dropped((), messages) == ""
    assert "do not fit" in describe_dropped(None, messages)


def test_set_text_and_focus(qtbot: QtBot, composer: Composer) -> None:
    composer.set_text("restored draft")
    assert composer.text() == "restored draft"
    assert edit_of(composer).textCursor().position() == len("restored draft")
    composer.activateWindow()
    composer.focus_input()
    qtbot.waitUntil(lambda: edit_of(composer).hasFocus())


def test_the_box_grows_with_its_lines_up_to_a_limit(composer: Composer) -> None:
    edit = edit_of(composer)
    small = edit.height()
    composer.set_text("\n".join(["line"] * 5))
    bigger = edit.height()
    composer.set_text("\n".join(["line"] * 50))
    capped = edit.height()
    assert small < bigger < capped
    composer.set_text("\n".join(["line"] * 80))
    assert edit.height() == capped


def test_esc_stops_once_even_where_the_window_binds_esc(qtbot: QtBot, composer: Composer) -> None:
    window_esc: list[bool] = []
    shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), composer)
    shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
    shortcut.activated.connect(lambda: window_esc.append(True))
    stops: list[bool] = []
    composer.stopRequested.connect(lambda: stops.append(True))
    composer.activateWindow()
    composer.focus_input()
    qtbot.waitUntil(lambda: edit_of(composer).hasFocus())
    composer.set_busy(True)
    qtbot.keyClick(edit_of(composer), Qt.Key.Key_Escape)
    assert stops == [True] and window_esc == []
    composer.set_busy(False)
    qtbot.keyClick(edit_of(composer), Qt.Key.Key_Escape)  # idle: the window's Esc runs
    assert stops == [True] and window_esc == [True]
