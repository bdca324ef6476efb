"""The chat view: messages, streaming, actions, versions, following the bottom, long chats."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPoint, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QGuiApplication,
    QKeySequence,
    QPalette,
    QShortcut,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractSlider,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QToolButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.chats.conversation import MessageTree, StoredMessage, reply_summary
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, TopToken
from app.ui.chat import chat_view as chat_view_module
from app.ui.chat.chat_view import ChatView
from app.ui.chat.markdown_render import DARK, LIGHT
from app.ui.chat.message_block import MessageBlock, MessageText
from tests.ui.pixels import assert_flat_scroll_bar

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

SETTINGS = SamplingSettings(temperature=0.3, seed=11, max_tokens=256)
STATS = {
    "completion_tokens": 42,
    "decode_tps": 35.5,
    "ttft_ms": 80.0,
    "stop_reason": "end_of_turn",
}
CODE = 'print("hello")\nprint(1 < 2)'
MARKDOWN_REPLY = f"Some **bold** text.\n\n```python\n{CODE}\n```\n"


def user(mid: int, parent: int | None, text: str) -> StoredMessage:
    return StoredMessage(mid, 1, parent, "user", text, 0.0)


def reply(mid: int, parent: int, text: str, status: str = "complete") -> StoredMessage:
    return StoredMessage(
        mid,
        1,
        parent,
        "assistant",
        text,
        0.0,
        status=status,  # type: ignore[arg-type]
        model="smol.gguf",
        settings=SETTINGS,
        seed=11,
        stats=STATS if status != "streaming" else None,
    )


def linear_chat(count: int) -> list[StoredMessage]:
    made: list[StoredMessage] = []
    for i in range(count):
        parent = i or None
        if i % 2 == 0:
            made.append(user(i + 1, parent, f"Question number {i}"))
        else:
            made.append(reply(i + 1, i, f"Answer number {i} with `code` and *emphasis*."))
    return made


def settle() -> None:
    """Run posted events: layouts, queued shows, deferred deletes, and the zero timer that
    follows the bottom once the layouts have settled (a new line takes four passes)."""
    for _ in range(5):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()


def show(view: ChatView, messages: list[StoredMessage], leaf: int | None = None) -> None:
    tree = MessageTree(messages)
    view.set_conversation(tree.active_path(leaf), tree)
    settle()


def block(view: ChatView, message_id: int) -> MessageBlock:
    found = view.message_block(message_id)
    assert found is not None, message_id
    return found


def part(widget: QWidget, kind: type[QWidget], name: str) -> QWidget:
    found = widget.findChild(kind, name)
    assert isinstance(found, kind), name
    return found


def click(qtbot: QtBot, widget: QWidget, kind: type[QWidget], name: str) -> None:
    target = part(widget, kind, name)
    assert target.isVisible() and target.isEnabled(), name
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton)


def scroll_bar(view: ChatView) -> QAbstractSlider:
    area = part(view, QScrollArea, "chatScrollArea")
    assert isinstance(area, QScrollArea)
    return area.verticalScrollBar()


def at_bottom(view: ChatView) -> bool:
    bar = scroll_bar(view)
    return bar.value() == bar.maximum()


def anchor_point(text: MessageText, href: str) -> QPoint:
    """Viewport coordinates of the link `href` in a message's text."""
    document = text.document()
    block_ = document.begin()
    while block_.isValid():
        it = block_.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position() + 1)
                return text.cursorRect(cursor).center()
            it += 1
        block_ = block_.next()
    raise AssertionError(f"no link {href}")


# ----- showing a conversation -----


def test_messages_show_in_order_with_their_text_stats_and_status(view: ChatView) -> None:
    messages = [
        user(1, None, "Hi there"),
        reply(2, 1, "Hello! How can I help?"),
        user(3, 2, "Tell me a story"),
        reply(4, 3, "Once upon a time", status="cancelled"),
        user(5, 4, "Go on"),
        reply(6, 5, "The keeper", status="interrupted"),
        user(7, 6, "And?"),
        reply(8, 7, "The model failed", status="error"),
    ]
    show(view, messages)
    assert view.built_message_ids() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert block(view, 1).text.toPlainText() == "Hi there"
    assert block(view, 2).text.toPlainText() == "Hello! How can I help?"
    role = part(block(view, 1), QLabel, "roleLabel")
    assert isinstance(role, QLabel) and role.text() == "You"

    stats = part(block(view, 2), QLabel, "replyStatsLabel")
    assert isinstance(stats, QLabel) and stats.isVisible()
    assert stats.text() == reply_summary(messages[1])
    assert "42 tokens" in stats.text() and "seed 11" in stats.text()
    assert not part(block(view, 2), QLabel, "replyStatusLabel").isVisible()

    for mid, words, level in (
        (4, "Stopped", "warn"),
        (6, "Interrupted", "warn"),
        (8, "Error", "error"),
    ):
        status = part(block(view, mid), QLabel, "replyStatusLabel")
        assert isinstance(status, QLabel) and status.isVisible()
        assert status.text().startswith(words)
        assert status.property("level") == level
    assert not part(block(view, 1), QWidget, "deleteButton").isHidden()
    assert block(view, 1).findChild(QToolButton, "regenerateButton") is None
    assert block(view, 2).findChild(QToolButton, "editButton") is None


def test_every_interactive_widget_is_named(view: ChatView) -> None:
    messages = [user(1, None, "a"), reply(2, 1, MARKDOWN_REPLY), reply(3, 1, "b")]
    show(view, messages)
    block(view, 1).start_edit()
    view.show_error("Something went wrong")
    for kind in (QPushButton, QToolButton, QTextBrowser, QPlainTextEdit, QScrollArea):
        for widget in view.findChildren(kind):
            assert widget.objectName() and widget.accessibleName(), widget


def test_text_is_selectable(view: ChatView) -> None:
    show(view, [user(1, None, "select me"), reply(2, 1, "and me")])
    text = block(view, 2).text
    flags = text.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
    assert flags & Qt.TextInteractionFlag.TextSelectableByKeyboard
    text.selectAll()
    assert text.textCursor().selectedText() == "and me"


# ----- streaming -----


def test_two_thousand_chunks_stream_into_one_block(view: ChatView) -> None:
    show(view, [user(1, None, "Write a lot")])
    view.begin_reply(reply(2, 1, "", status="streaming"))
    assert view.is_streaming
    chunks = [f" word{i}" + ("\n\n" if i % 97 == 96 else "") for i in range(2000)]
    for chunk in chunks:
        view.append_reply_text(2, chunk)
    settle()
    streamed = block(view, 2)
    expected = "".join(chunks)
    assert streamed.plain_text() == expected
    assert streamed.is_streaming
    shown = [t.toPlainText() for t in streamed.findChildren(MessageText) if t.isVisible()]
    assert len(shown) == streamed.segment_count > 1  # long replies stream in segments
    assert re.sub(r"\s+", " ", " ".join(shown)).strip() == re.sub(r"\s+", " ", expected).strip()
    assert at_bottom(view)

    view.finish_reply(reply(2, 1, expected))
    settle()
    assert not view.is_streaming and not streamed.is_streaming
    assert streamed.segment_count == 1
    assert "word1999" in streamed.text.toPlainText()


def test_a_reply_streaming_into_the_tokens_view_is_not_laid_out_as_plain_text_too(
    view: ChatView,
) -> None:
    show(view, [user(1, None, "Write a lot")])
    view.begin_reply(reply(2, 1, "", status="streaming"))
    streamed = block(view, 2)
    streamed.set_tokens_mode(True)
    words = [f" word{i}" + ("\n\n" if i % 40 == 39 else "") for i in range(300)]
    records = [
        TokenRecord(i, word.encode(), -0.1, (TopToken(i, word.encode(), -0.1),))
        for i, word in enumerate(words)
    ]
    for i in range(0, len(words), 6):
        view.append_token_records(2, records[i : i + 6])
        view.append_reply_text(2, "".join(words[i : i + 6]))
    settle()
    panel = streamed.token_panel
    assert panel is not None and len(panel.view.records) == 300
    assert streamed.plain_text() == "".join(words)
    # The hidden plain text was left as it was when the tokens view opened (empty).
    assert all(
        not t.toPlainText() for t in streamed.findChildren(MessageText) if t is not panel.view
    )
    # The last paragraph keeps its shaped glyphs between paints.
    assert panel.view.document().lastBlock().layout().cacheEnabled()

    streamed.set_tokens_mode(False)  # mid-reply: the plain text catches up at once
    settle()
    shown = [t.toPlainText() for t in streamed.findChildren(MessageText) if t.isVisible()]
    assert (
        re.sub(r"\s+", " ", " ".join(shown)).strip() == re.sub(r"\s+", " ", "".join(words)).strip()
    )
    view.append_reply_text(2, " tail")
    settle()
    assert streamed.plain_text().endswith("word299 tail")
    assert streamed.findChildren(MessageText)[0].toPlainText()  # laid out again
    shown = [t.toPlainText() for t in streamed.findChildren(MessageText) if t.isVisible()]
    assert " ".join(shown).rstrip().endswith("word299 tail")


def test_text_for_other_or_finished_replies_is_ignored(view: ChatView) -> None:
    show(view, [user(1, None, "Hi"), reply(2, 1, "Done already")])
    view.append_reply_text(2, " more")  # finished: not streaming
    view.append_reply_text(99, "stray")  # unknown id
    view.finish_reply(reply(99, 1, "stray"))
    assert block(view, 2).text.toPlainText() == "Done already"
    assert view.message_block(99) is None


def test_begin_reply_reuses_a_block_already_on_show(view: ChatView) -> None:
    messages = [user(1, None, "Hi"), reply(2, 1, "Hel", status="streaming")]
    show(view, messages)
    assert view.is_streaming
    view.begin_reply(messages[1])
    view.append_reply_text(2, "lo")
    assert view.built_message_ids() == [1, 2]
    assert block(view, 2).plain_text() == "Hello"


def test_finish_renders_markdown_with_a_highlighted_code_block_and_copy_link(
    qtbot: QtBot, view: ChatView
) -> None:
    show(view, [user(1, None, "Code please")])
    view.begin_reply(reply(2, 1, "", status="streaming"))
    for piece in re.findall(r".{1,5}", MARKDOWN_REPLY, flags=re.DOTALL):
        view.append_reply_text(2, piece)
    assert "**bold**" in block(view, 2).text.toPlainText()  # plain while streaming
    status = part(block(view, 2), QLabel, "replyStatusLabel")
    assert isinstance(status, QLabel) and status.text() == "Writing…"

    view.finish_reply(reply(2, 1, MARKDOWN_REPLY))
    settle()
    finished = block(view, 2)
    text = finished.text
    assert "**bold**" not in text.toPlainText() and "Some bold text." in text.toPlainText()
    assert 'print("hello")' in text.toPlainText()
    assert finished.code_blocks == (CODE,)
    html = text.toHtml()
    assert "font-weight:700" in html or "font-weight:600" in html  # bold and highlighting
    assert html.count("color:#") > 3  # Pygments' colours survive in Qt's document
    assert not status.isVisible()
    stats = part(finished, QLabel, "replyStatsLabel")
    assert isinstance(stats, QLabel) and "42 tokens" in stats.text()

    QGuiApplication.clipboard().clear()
    with qtbot.waitSignal(view.copied, timeout=2000) as blocker:
        qtbot.mouseClick(
            text.viewport(), Qt.MouseButton.LeftButton, pos=anchor_point(text, "copy:0")
        )
    assert blocker.args == [CODE]
    assert QGuiApplication.clipboard().text() == CODE


def test_links_open_only_for_web_addresses(
    qtbot: QtBot, view: ChatView, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    show(view, [user(1, None, "links"), reply(2, 1, "[site](https://example.org) ![x](/etc/x)")])
    text = block(view, 2).text
    qtbot.mouseClick(
        text.viewport(), Qt.MouseButton.LeftButton, pos=anchor_point(text, "https://example.org")
    )
    qtbot.mouseClick(text.viewport(), Qt.MouseButton.LeftButton, pos=anchor_point(text, "/etc/x"))
    assert opened == ["https://example.org"]
    text.anchorClicked.emit(QUrl("copy:7"))  # out of range: nothing happens


# ----- actions -----


def test_copy_puts_the_message_text_on_the_clipboard(qtbot: QtBot, view: ChatView) -> None:
    show(view, [user(1, None, "Copy **me**"), reply(2, 1, MARKDOWN_REPLY)])
    with qtbot.waitSignal(view.copied, timeout=1000) as blocker:
        click(qtbot, block(view, 1), QToolButton, "copyButton")
    assert blocker.args == ["Copy **me**"]
    assert QGuiApplication.clipboard().text() == "Copy **me**"
    with qtbot.waitSignal(view.copied, timeout=1000) as blocker:
        click(qtbot, block(view, 2), QToolButton, "copyButton")
    assert blocker.args == [MARKDOWN_REPLY]


def test_editing_a_user_message_requests_an_edit(qtbot: QtBot, view: ChatView) -> None:
    show(view, [user(1, None, "Original question"), reply(2, 1, "Answer")])
    first = block(view, 1)
    click(qtbot, first, QToolButton, "editButton")
    editor = first.editor
    assert editor is not None and editor.toPlainText() == "Original question"
    assert not first.text.isVisible()
    editor.setPlainText("Better question")
    with qtbot.waitSignal(view.editRequested, timeout=1000) as blocker:
        click(qtbot, first, QPushButton, "saveEditButton")
    assert blocker.args == [1, "Better question"]
    assert first.editor is None and first.text.isVisible()

    edits: list[tuple[int, str]] = []
    view.editRequested.connect(lambda mid, text: edits.append((mid, text)))
    first.start_edit()
    assert first.editor is not None
    first.editor.setPlainText("Changed, then cancelled")
    qtbot.keyClick(first.editor, Qt.Key.Key_Escape)
    assert first.editor is None
    first.start_edit()
    assert first.editor is not None
    qtbot.keyClick(first.editor, Qt.Key.Key_Return)  # unchanged: nothing to send
    first.start_edit()
    assert first.editor is not None
    first.editor.setPlainText("   ")
    qtbot.keyClick(first.editor, Qt.Key.Key_Return)  # blank: refused, editor stays
    assert first.editor is not None
    click(qtbot, first, QPushButton, "cancelEditButton")
    assert edits == []

    first.start_edit()
    assert first.editor is not None
    first.editor.setPlainText("Via keyboard")
    first.editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(first.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(first.editor, "second line")
    with qtbot.waitSignal(view.editRequested, timeout=1000) as blocker:
        qtbot.keyClick(first.editor, Qt.Key.Key_Return)
    assert blocker.args == [1, "Via keyboard\nsecond line"]


def test_regenerate_and_regenerate_with_these_settings(qtbot: QtBot, view: ChatView) -> None:
    show(view, [user(1, None, "Q"), reply(2, 1, "A")])
    with qtbot.waitSignal(view.regenerateRequested, timeout=1000) as blocker:
        click(qtbot, block(view, 2), QToolButton, "regenerateButton")
    assert blocker.args == [2, None]
    with_settings = part(block(view, 2), QPushButton, "regenerateWithSettingsButton")
    assert "temperature 0.3" in with_settings.toolTip()
    with qtbot.waitSignal(view.regenerateRequested, timeout=1000) as blocker:
        click(qtbot, block(view, 2), QPushButton, "regenerateWithSettingsButton")
    assert blocker.args == [2, SETTINGS]


def test_version_arrows_move_between_siblings(qtbot: QtBot, view: ChatView) -> None:
    messages = [user(1, None, "Q"), reply(2, 1, "v1"), reply(3, 1, "v2"), reply(4, 1, "v3")]
    show(view, messages, leaf=3)
    assert view.built_message_ids() == [1, 3]
    middle = block(view, 3)
    label = part(middle, QLabel, "versionLabel")
    assert isinstance(label, QLabel) and label.text() == "2/3"
    with qtbot.waitSignal(view.siblingRequested, timeout=1000) as blocker:
        click(qtbot, middle, QToolButton, "previousVersionButton")
    assert blocker.args == [3, -1]
    with qtbot.waitSignal(view.siblingRequested, timeout=1000) as blocker:
        click(qtbot, middle, QToolButton, "nextVersionButton")
    assert blocker.args == [3, 1]
    assert block(view, 1).findChild(QToolButton, "previousVersionButton") is None

    show(view, messages, leaf=2)
    first = block(view, 2)
    assert not part(first, QToolButton, "previousVersionButton").isEnabled()
    assert part(first, QToolButton, "nextVersionButton").isEnabled()
    show(view, messages, leaf=4)
    assert not part(block(view, 4), QToolButton, "nextVersionButton").isEnabled()


def test_delete_requests_the_message_id(qtbot: QtBot, view: ChatView) -> None:
    show(view, [user(1, None, "Q"), reply(2, 1, "A")])
    with qtbot.waitSignal(view.deleteRequested, timeout=1000) as blocker:
        click(qtbot, block(view, 1), QToolButton, "deleteButton")
    assert blocker.args == [1]
    with qtbot.waitSignal(view.deleteRequested, timeout=1000) as blocker:
        click(qtbot, block(view, 2), QToolButton, "deleteButton")
    assert blocker.args == [2]


def test_actions_that_change_the_chat_wait_while_a_reply_streams(view: ChatView) -> None:
    messages = [user(1, None, "Q"), reply(2, 1, "A1"), reply(3, 1, "A2"), user(4, 3, "Q2")]
    show(view, messages)
    block(view, 4).start_edit()  # an edit left open when the reply starts
    view.begin_reply(reply(5, 4, "", status="streaming"))
    first, answer = block(view, 1), block(view, 3)
    assert not part(block(view, 4), QPushButton, "saveEditButton").isEnabled()
    for target, name in (
        (first, "editButton"),
        (first, "deleteButton"),
        (answer, "regenerateButton"),
        (answer, "previousVersionButton"),
        (answer, "regenerateWithSettingsButton"),
    ):
        assert not part(target, QWidget, name).isEnabled(), name
    assert part(first, QToolButton, "copyButton").isEnabled()
    assert not part(block(view, 5), QWidget, "regenerateWithSettingsButton").isVisible()
    view.finish_reply(reply(5, 4, "Done"))
    assert part(block(view, 4), QPushButton, "saveEditButton").isEnabled()
    assert part(first, QToolButton, "editButton").isEnabled()
    assert part(answer, QToolButton, "previousVersionButton").isEnabled()
    assert not part(answer, QToolButton, "nextVersionButton").isEnabled()


def test_errors_show_inline_until_dismissed_or_a_new_reply(qtbot: QtBot, view: ChatView) -> None:
    show(view, [user(1, None, "Q")])
    view.show_error("No model is loaded. Open a model first.")
    notice = part(view, QWidget, "errorNotice")
    label = part(view, QLabel, "errorNoticeLabel")
    assert isinstance(label, QLabel)
    assert notice.isVisible() and label.text() == "No model is loaded. Open a model first."
    click(qtbot, view, QToolButton, "dismissErrorButton")
    assert not notice.isVisible()
    view.show_error("Again")
    view.begin_reply(reply(2, 1, "", status="streaming"))
    assert not notice.isVisible()


# ----- following the bottom -----


def test_following_the_bottom_and_jump_to_latest(qtbot: QtBot, view: ChatView) -> None:
    show(view, linear_chat(12))
    view.begin_reply(reply(13, 12, "", status="streaming"))
    jump = part(view, QPushButton, "jumpToLatestButton")
    for i in range(40):
        view.append_reply_text(13, f"line {i}\n")
        settle()
        assert at_bottom(view)
    assert view.is_following and not jump.isVisible()

    bar = scroll_bar(view)
    bar.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)  # the person scrolls up
    settle()
    assert not view.is_following and jump.isVisible()
    held = bar.value()
    for i in range(40):
        view.append_reply_text(13, f"more {i}\n")
    settle()
    assert bar.value() == held and bar.maximum() > held  # the view stays where they read

    qtbot.mouseClick(jump, Qt.MouseButton.LeftButton)
    settle()
    assert view.is_following and not jump.isVisible() and at_bottom(view)
    for i in range(20):
        view.append_reply_text(13, f"after {i}\n")
    settle()
    assert at_bottom(view)

    bar.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)
    settle()
    assert jump.isVisible()
    bar.setValue(bar.maximum())  # scrolling back down by hand also resumes following
    settle()
    assert view.is_following and not jump.isVisible()


def test_palette_changes_re_render_code_for_dark_and_light(view: ChatView) -> None:
    show(view, [user(1, None, "Q"), reply(2, 1, MARKDOWN_REPLY)])
    html = block(view, 2).text.toHtml().lower()
    assert LIGHT.background in html
    dark = QPalette(view.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#e6e6e6"))
    view.setPalette(dark)
    settle()
    html = block(view, 2).text.toHtml().lower()
    assert DARK.background in html and LIGHT.background not in html


# ----- long conversations -----


def test_a_500_message_chat_builds_only_the_newest_and_older_messages_on_demand(
    qtbot: QtBot, view: ChatView
) -> None:
    show(view, linear_chat(4))  # warm the renderer's imports and caches
    messages = linear_chat(500)
    tree = MessageTree(messages)
    path = tree.active_path(None)
    assert len(path) == 500

    # How fast it opens is measured in tests/bench/chat_view.py; here: what gets built.
    view.set_conversation(path, tree)
    settle()

    built = view.built_message_ids()
    assert built[-1] == 500 and len(built) < 100
    assert at_bottom(view) and view.is_following
    last = block(view, 500)
    assert last.visibleRegion().boundingRect().height() > 0  # the newest is on screen
    load = part(view, QPushButton, "loadEarlierButton")
    assert load.text() == f"Show {500 - len(built)} earlier messages"

    bar = scroll_bar(view)
    bar.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)
    settle()
    anchor = block(view, built[0])
    position = anchor.mapTo(view, QPoint(0, 0)).y()
    qtbot.mouseClick(load, Qt.MouseButton.LeftButton)
    settle()
    more = view.built_message_ids()
    assert len(more) > len(built) and more[-len(built) :] == built
    assert abs(anchor.mapTo(view, QPoint(0, 0)).y() - position) <= 2  # the view held still

    def scroll_to_top() -> bool:
        bar.setValue(0)
        settle()
        return len(view.built_message_ids()) == 500

    qtbot.waitUntil(scroll_to_top, timeout=90_000)  # batches build on idle; a busy CI is slow
    assert view.built_message_ids() == list(range(1, 501))
    assert not load.isVisible()
    assert block(view, 1).text.toPlainText() == "Question number 0"


def test_a_short_chat_fills_the_view_from_older_batches(
    view: ChatView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_view_module, "INITIAL_BLOCKS", 2)
    show(view, linear_chat(30))
    for _ in range(10):
        settle()
    assert len(view.built_message_ids()) > 2  # an empty view above asks for more


def test_esc_cancels_an_edit_even_where_the_window_binds_esc(qtbot: QtBot, view: ChatView) -> None:
    window_esc: list[bool] = []
    shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), view)
    shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
    shortcut.activated.connect(lambda: window_esc.append(True))
    show(view, [user(1, None, "Q")])
    first = block(view, 1)
    view.activateWindow()
    first.start_edit()
    editor = first.editor
    assert editor is not None
    qtbot.waitUntil(editor.hasFocus)
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert first.editor is None and window_esc == []


def test_append_message_adds_a_sent_message_without_a_rebuild(view: ChatView) -> None:
    messages = [user(1, None, "Q"), reply(2, 1, "A")]
    show(view, messages)
    first = block(view, 1)
    sent = user(3, 2, "Next question")
    view.append_message(sent, MessageTree([*messages, sent]))
    view.append_message(sent)  # twice: once on show
    settle()
    assert view.built_message_ids() == [1, 2, 3]
    assert block(view, 1) is first
    assert block(view, 3).text.toPlainText() == "Next question"
    view.begin_reply(reply(4, 3, "", status="streaming"))
    assert view.built_message_ids() == [1, 2, 3, 4]
    assert at_bottom(view)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_scroll_bar_is_a_flat_handle_on_the_chat_s_background(
    qtbot: QtBot, view: ChatView, dark: bool
) -> None:
    palette = QPalette(view.palette())
    if dark:
        for role, colour in (("Base", "#1e1e1e"), ("Mid", "#5a5a5a"), ("Text", "#e6e6e6")):
            palette.setColor(getattr(QPalette.ColorRole, role), QColor(colour))
    view.setPalette(palette)
    messages = [user(1, None, "Tell me a story. " * 40)]
    messages.append(reply(2, 1, "Once upon a time. " * 200))
    show(view, messages)
    settle()
    area = view.findChild(QScrollArea, "chatScrollArea")
    assert isinstance(area, QScrollArea)
    assert_flat_scroll_bar(qtbot, area, QPalette.ColorRole.Base)
