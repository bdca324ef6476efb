"""Compare two settings on the same turn, in the real window with the real model: two
replies side by side, where they part, exploring that step, keeping one as a version, and
closing mid-generation."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import SIGNAL, QObject, Slot
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QPushButton, QSpinBox
from pytestqt.qtbot import QtBot

from app.core.chats.store import Store
from app.core.inference.events import GenerationDone, StopReason
from app.core.inference.token_data import TokenRecord
from app.core.paths import app_paths
from app.ui.chat.compare_dialog import CompareDialog
from app.ui.controllers.compare import CompareController, first_divergence
from app.ui.main_window import MainWindow
from app.ui.sampling.explorer_panel import ExplorerPanel
from tests.ui import test_main_window
from tests.ui.test_main_window import (
    COUNT,
    LONG,
    TIMEOUT_MS,
    MakeWindow,
    block_of,
    child,
    click,
    send,
    wait_reply_done,
)

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


def open_compare(qtbot: QtBot, window: MainWindow) -> tuple[CompareController, CompareDialog]:
    """Press "Compare…" on the last user message of the branch on show."""
    user = [m for m in window.current_path if m.role == "user"][-1]
    button = block_of(window, user.id).compare_button
    assert button is not None and button.isEnabled()
    click(qtbot, button)
    controller = window.findChild(CompareController)
    assert isinstance(controller, CompareController)
    dialog = controller.dialog
    assert isinstance(dialog, CompareDialog)
    qtbot.waitExposed(dialog)
    return controller, dialog


def token_receivers(window: MainWindow) -> int:
    """How many slots the worker's streamed tokens reach (each one an event per refresh
    for the GUI thread)."""
    return int(window.inference.worker.receivers(SIGNAL("tokens(int,QString,PyObject)")))


def ids(records: tuple[TokenRecord, ...]) -> list[int]:
    return [r.token_id for r in records]


def text_of(records: tuple[TokenRecord, ...]) -> str:
    return b"".join(r.piece for r in records).decode("utf-8", errors="replace")


def position_of(where: str) -> int:
    """The position in the explorer's "where" line ("… (position 1,234; …")."""
    return int(where.split("(position ", 1)[1].split(";", 1)[0].replace(",", ""))


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2
    assert first_divergence([], [4]) == 0


def test_compare_makes_two_replies_marks_where_they_part_and_keeps_one(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)  # the sliders: greedy, 16 tokens
    send(qtbot, window, "Name three colours.")
    wait_reply_done(qtbot, window)
    original = window.current_path[-1]
    user = window.current_path[-2]
    assert token_receivers(window) == 1  # the chat's replies only
    controller, dialog = open_compare(qtbot, window)
    assert token_receivers(window) == 2  # and the comparison, while its dialog is open
    assert child(dialog, QComboBox, "compareBaseA").currentText() == "Current sliders"
    child(dialog, QDoubleSpinBox, "compareTemperatureA").setValue(0.0)
    child(dialog, QDoubleSpinBox, "compareTemperatureB").setValue(1.5)
    child(dialog, QSpinBox, "compareSeedB").setValue(1)

    with qtbot.waitSignal(controller.compared, timeout=TIMEOUT_MS) as compared:
        click(qtbot, child(dialog, QPushButton, "compareStartButton"))
    a, b = dialog.records(0), dialog.records(1)
    assert a and b
    # A is greedy like the chat's reply, so it is that reply again, token for token.
    assert text_of(a) == original.content
    expected = next(
        (i for i in range(min(len(a), len(b))) if a[i].token_id != b[i].token_id),
        None if len(a) == len(b) else min(len(a), len(b)),
    )
    assert ids(a) != ids(b)  # temperature 1.5 with seed 1 writes something else
    assert expected is not None
    assert compared.args == [expected]
    assert dialog.divergence == expected
    for side, records in ((0, a), (1, b)):
        column = dialog.columns[side]
        assert column.tokens.marked == (expected if expected < len(records) else -1)
        assert "tokens" in child(dialog, QLabel, f"compareStats{'AB'[side]}").text()
    assert f"token {expected + 1}" in child(dialog, QLabel, "compareDivergence").text()
    assert window.store.tree(user.conversation_id).children(user.id) == (original,)

    # Explore A's step where they part: the explorer reads the same prompt and A's tokens
    # before it; under the greedy sliders it picks A's token there.
    explorer = window.findChild(ExplorerPanel)
    assert isinstance(explorer, ExplorerPanel)
    where = child(explorer, QLabel, "explorerPosition")
    click(qtbot, child(dialog, QPushButton, "compareExploreA"))
    qtbot.waitUntil(
        lambda: (
            where.text().startswith(f"Compare A, reply token {expected + 1}")
            and explorer.exploration is not None
        ),
        timeout=TIMEOUT_MS,
    )
    exploration = explorer.exploration
    assert exploration is not None and exploration.pick_rule == "greedy"
    if expected < len(a):
        assert exploration.pick == a[expected].token_id
    position_a = position_of(where.text())

    # A token clicked in B is the step its "Explore" opens: B's tokens before it are read.
    dialog.columns[1].pick_step(3)
    click(qtbot, child(dialog, QPushButton, "compareExploreB"))
    qtbot.waitUntil(lambda: where.text().startswith("Compare B, reply token 4"), timeout=TIMEOUT_MS)
    assert position_of(where.text()) == position_a - expected + 3

    # Keep B: a new version of the reply, made with B's settings, shown in the chat.
    click(qtbot, child(dialog, QPushButton, "compareKeepB"))
    qtbot.waitUntil(lambda: window.current_path[-1].id != original.id, timeout=TIMEOUT_MS)
    kept = window.current_path[-1]
    assert kept.parent_id == user.id and kept.status == "complete"
    assert kept.content == text_of(b)
    assert kept.settings is not None and kept.settings.temperature == 1.5
    assert kept.seed == 1
    data = window.store.token_data(kept.id)
    assert data is not None and ids(data.records) == ids(b)
    assert [m.id for m in window.store.tree(user.conversation_id).children(user.id)] == [
        original.id,
        kept.id,
    ]
    assert window.chat_view.tree_position(kept.id) == (1, 2)
    assert not child(dialog, QPushButton, "compareKeepB").isEnabled()
    dialog.close()
    assert controller.dialog is None
    assert token_receivers(window) == 1


class Ends(QObject):
    """Records the worker's `finished` events (through a @Slot)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.done: dict[int, GenerationDone] = {}
        window.inference.worker.finished.connect(self.on_finished)

    @Slot(int, object)
    def on_finished(self, request_id: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.done[request_id] = done


def test_closing_mid_generation_cancels_both_and_saves_nothing(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    window.store.save_preset("Long count", LONG)  # greedy, 400 tokens
    send(qtbot, window, COUNT)
    wait_reply_done(qtbot, window)
    before = window.store.messages(window.current_conversation_id or 0)
    ends = Ends(window)
    controller, dialog = open_compare(qtbot, window)
    for side in "AB":
        child(dialog, QComboBox, f"compareBase{side}").setCurrentText("Long count")
    assert dialog.settings(1).max_tokens == 400
    click(qtbot, child(dialog, QPushButton, "compareStartButton"))
    qtbot.waitUntil(lambda: len(dialog.records(0)) > 0, timeout=TIMEOUT_MS)
    assert controller.running
    request_ids = controller.request_ids
    assert len(request_ids) == 2
    dialog.close()
    assert controller.dialog is None and not controller.running
    qtbot.waitUntil(lambda: all(rid in ends.done for rid in request_ids), timeout=TIMEOUT_MS)
    for rid in request_ids:
        assert ends.done[rid].stats.stop_reason is StopReason.CANCELLED
    assert len(ends.done[request_ids[0]].tokens) < 400
    assert window.store.messages(window.current_conversation_id or 0) == before
    # The model is free again: the chat goes on.
    send(qtbot, window, "Thanks.")
    wait_reply_done(qtbot, window)
    assert window.current_path[-1].status == "complete"


def test_closing_the_window_mid_comparison_leaves_the_chat_as_it_was(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, tmp_path: Path
) -> None:
    paths = app_paths(tmp_path / "closing").ensure()
    window = make_window(model=starter_model, paths=paths)
    window.store.save_preset("Long count", LONG)
    send(qtbot, window, COUNT)
    wait_reply_done(qtbot, window)
    conversation_id = window.current_conversation_id
    assert conversation_id is not None
    before = window.store.messages(conversation_id)
    _controller, dialog = open_compare(qtbot, window)
    child(dialog, QComboBox, "compareBaseA").setCurrentText("Long count")
    click(qtbot, child(dialog, QPushButton, "compareStartButton"))
    qtbot.waitUntil(lambda: len(dialog.records(0)) > 0, timeout=TIMEOUT_MS)
    assert window.shutdown()  # the worker stopped in time
    with Store.open(paths) as store:
        assert store.messages(conversation_id) == before
        assert store.mark_interrupted_replies() == 0
