"""The token inspector in the real window with the real model: replies as tokens, a token's
rivals, branching at a rival, and the View menu default."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QTextCursor
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from app.ui.chat.message_block import MessageBlock
from app.ui.chat.token_view import TokenPanel, probability_bin
from tests.ui import test_main_window
from tests.ui.test_main_window import TIMEOUT_MS, MakeWindow, send, wait_reply_done

make_window = test_main_window.make_window  # the window fixture, shared

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def reply_block(window: object) -> MessageBlock:
    path = window.current_path  # type: ignore[attr-defined]
    block = window.chat_view.message_block(path[-1].id)  # type: ignore[attr-defined]
    assert isinstance(block, MessageBlock)
    return block


def open_tokens(qtbot: QtBot, block: MessageBlock) -> TokenPanel:
    assert block.tokens_button is not None
    block.tokens_button.click()
    panel = block.token_panel
    assert panel is not None
    qtbot.waitUntil(lambda: len(panel.view.records) > 0, timeout=TIMEOUT_MS)
    return panel


def hover_token(qtbot: QtBot, panel: TokenPanel, index: int) -> None:
    """Move the mouse onto token `index` of the tokens view."""
    view = panel.view
    document = view.document()
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == str(index):
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position() + max(0, fragment.length() // 2))
                point = QPointF(view.cursorRect(cursor).center())
                move = QMouseEvent(
                    QEvent.Type.MouseMove,
                    point,
                    view.viewport().mapToGlobal(point),
                    Qt.MouseButton.NoButton,
                    Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier,
                )
                QApplication.sendEvent(view.viewport(), move)
                return
            it += 1
        block = block.next()
    raise AssertionError(f"token {index} is not in the view")


def test_a_reply_shows_as_tokens_and_a_token_shows_its_rivals(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name three colours.")
    wait_reply_done(qtbot, window)
    block = reply_block(window)
    panel = open_tokens(qtbot, block)
    assert block.tokens_shown and block.text.isHidden()
    records = panel.view.records
    text = b"".join(r.piece for r in records).decode("utf-8", errors="replace")
    assert text == window.current_path[-1].content  # the tokens spell the reply
    hover_token(qtbot, panel, 2)
    details = panel.details
    qtbot.waitUntil(lambda: details.index == 2, timeout=TIMEOUT_MS)
    buttons = details.buttons
    assert len(buttons) == 10  # the top 10 rivals, best first
    chosen = records[2]
    assert buttons[0].property("tokenId") == chosen.token_id  # greedy: the chosen one leads
    assert not buttons[0].isEnabled()  # the chosen token is not a branch
    assert "chosen" in buttons[0].accessibleName()
    probs = [alt.prob for alt in chosen.top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    entropy = details.findChild(QObject, "tokenEntropyLabel")
    assert "bits" in entropy.text()  # type: ignore[union-attr]
    settings = details.findChild(QObject, "tokenSettingsLabel")
    assert "temperature 0" in settings.text()  # type: ignore[union-attr]
    # Greedy settings cut every rival but the first.
    assert all("cut by greedy" in b.accessibleName() for b in buttons[1:])
    assert probability_bin(chosen.prob) in range(6)


def test_clicking_a_rival_branches_the_reply_from_the_kv_cache(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Name three colours.")
    wait_reply_done(qtbot, window)
    original = window.current_path[-1]
    panel = open_tokens(qtbot, reply_block(window))
    panel.show_details(1)
    records = panel.view.records
    rival = panel.details.buttons[1]
    rival_id = rival.property("tokenId")
    assert isinstance(rival, QPushButton) and rival.isEnabled()
    rival.click()
    wait_reply_done(qtbot, window)

    branched = window.current_path[-1]
    assert branched.id != original.id and branched.parent_id == original.parent_id
    assert window.store.tree(window.current_conversation_id).sibling_position(branched.id) == (
        1,
        2,
    )
    alternative = next(a for a in records[1].top if a.token_id == rival_id)
    prefix = (records[0].piece + alternative.piece).decode("utf-8", errors="replace")
    assert branched.content.startswith(prefix)
    stats = branched.stats or {}
    assert stats["branched_at"] == 2
    assert stats["branched_to"] == alternative.text
    # Only the forced token was read: the prompt and the kept token came from the cache.
    assert stats["prompt_tokens"] - stats["cached_tokens"] == 1
    data = window.store.token_data(branched.id)
    assert data is not None
    assert [r.token_id for r in data.records[:2]] == [records[0].token_id, rival_id]
    block = reply_block(window)
    assert "branched at token 2" in block.findChild(QObject, "replyStatsLabel").text()  # type: ignore[union-attr]


def test_the_view_menu_draws_every_reply_as_tokens(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path
) -> None:
    window = make_window(model=starter_model)
    send(qtbot, window, "Say hello.")
    wait_reply_done(qtbot, window)
    action = window.findChild(QObject, "tokensViewAction")
    action.trigger()  # type: ignore[union-attr]
    block = reply_block(window)
    assert block.tokens_shown
    assert block.token_panel is not None
    qtbot.waitUntil(lambda: len(block.token_panel.view.records) > 0, timeout=TIMEOUT_MS)  # type: ignore[union-attr]
    # A new reply streams straight into the tokens view.
    send(qtbot, window, "Again.")
    qtbot.waitUntil(lambda: window.active_request is not None, timeout=TIMEOUT_MS)
    wait_reply_done(qtbot, window)
    latest = reply_block(window)
    assert latest.tokens_shown and latest.token_panel is not None
    assert len(latest.token_panel.view.records) > 0
    action.trigger()  # type: ignore[union-attr]
    assert not latest.tokens_shown and latest.text.isVisible()
    assert Qt.Key.Key_T  # the shortcut is Ctrl+Shift+T


def test_messages_left_out_of_the_context_are_marked(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, tmp_path: Path
) -> None:
    from app.core.chats.store import Store
    from app.core.inference.sampling import SamplingSettings
    from app.core.paths import app_paths

    paths = app_paths(tmp_path / "long").ensure()
    long_text = "The history of the lighthouse keepers. " * 60  # ~500 tokens a message
    with Store.open(paths) as store:
        chat = store.create_conversation("Long chat")
        for _ in range(3):
            user = store.add_user_message(chat.id, long_text)
            reply = store.start_reply(user.id, model="m", settings=SamplingSettings())
            store.finish_reply(reply.id, long_text, "complete")
        first_user = store.active_path(chat.id)[0].id
    window = make_window(model=starter_model, paths=paths)  # a 1,024-token context
    window.open_conversation(chat.id)
    send(qtbot, window, "And now?")
    wait_reply_done(qtbot, window)
    first = window.chat_view.message_block(first_user)
    last_user = window.current_path[-2]
    assert first is not None and first.is_unseen  # the oldest turn was left out
    block = window.chat_view.message_block(last_user.id)
    assert block is not None and not block.is_unseen  # the new message was read
    unseen = (window.current_path[-1].stats or {}).get("unseen_message_ids")
    assert first_user in unseen
    # Opening the chat again shows the same marks, from the stored reply.
    window.new_chat()
    window.open_conversation(chat.id)
    qtbot.waitUntil(lambda: window.chat_view.message_block(first_user) is not None)
    assert window.chat_view.message_block(first_user).is_unseen  # type: ignore[union-attr]
