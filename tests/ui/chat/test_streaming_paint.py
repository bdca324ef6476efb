"""What a streaming reply repaints: its new lines, not the whole view, and nothing stale.

Painted regions are read from the paint events themselves; staleness is read by comparing
what the window's backing store holds (the offscreen platform's screen grab) with a fresh
render of the same widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QRect
from PySide6.QtGui import QGuiApplication, QImage, QPaintEvent
from PySide6.QtWidgets import QApplication, QWidget

from app.core.chats.conversation import MessageTree, StoredMessage
from app.core.inference.token_data import TokenRecord, TopToken
from app.ui.chat.chat_view import ChatView

REPLY_ID = 13


def settle() -> None:
    for _ in range(5):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()


def message(mid: int, parent: int | None, role: str, text: str) -> StoredMessage:
    status = "streaming" if mid == REPLY_ID else "complete"
    return StoredMessage(mid, 1, parent, role, text, 0.0, status=status)  # type: ignore[arg-type]


def words(count: int) -> list[str]:
    """Prose: words of varied length, a paragraph every 45 words."""
    return [
        f" {'lighthouse' if i % 7 == 0 else 'storm' if i % 3 == 0 else 'a'}{i}"
        + ("\n\n" if i % 45 == 44 else "")
        for i in range(count)
    ]


@pytest.fixture
def chat(view: ChatView) -> ChatView:
    """The view with twelve messages and a reply streaming under them."""
    earlier = [
        message(i + 1, i or None, "user" if i % 2 == 0 else "assistant", f"Message {i} " * 30)
        for i in range(REPLY_ID - 1)
    ]
    tree = MessageTree(earlier)
    view.set_conversation(tree.active_path(None), tree)
    settle()
    view.begin_reply(message(REPLY_ID, REPLY_ID - 1, "assistant", ""))
    settle()
    return view


class PaintedArea(QObject):
    """Sums the area of paint events per widget object name while installed."""

    def __init__(self) -> None:
        super().__init__()
        self.area: dict[str, int] = {}

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, QPaintEvent) and isinstance(watched, QWidget):
            name = watched.objectName()
            rects = cast("Iterable[QRect]", event.region())  # PySide iterates a QRegion
            covered = sum(r.width() * r.height() for r in rects)
            self.area[name] = self.area.get(name, 0) + covered
        return False


def stream(view: ChatView, pieces: list[str], *, tokens: bool = False, chunk: int = 6) -> None:
    for i in range(0, len(pieces), chunk):
        part = pieces[i : i + chunk]
        if tokens:
            records = [
                TokenRecord(i + k, w.encode(), -0.3 * (k + 1), (TopToken(0, b"x", -1.0),))
                for k, w in enumerate(part)
            ]
            view.append_token_records(REPLY_ID, records)
        view.append_reply_text(REPLY_ID, "".join(part))
        settle()


@pytest.mark.parametrize("tokens", [False, True], ids=["plain", "tokens view"])
def test_a_following_reply_repaints_its_new_lines_not_the_whole_view(
    chat: ChatView, tokens: bool
) -> None:
    view = chat
    view.set_tokens_default(tokens)
    view.begin_reply(message(REPLY_ID, REPLY_ID - 1, "assistant", ""))
    settle()
    pieces = words(600)
    stream(view, pieces[:120], tokens=tokens)  # the reply fills the view: it now scrolls
    bar = view.findChild(QWidget, "chatScrollArea").verticalScrollBar()  # type: ignore[union-attr]
    start = bar.value()
    painted = PaintedArea()
    app = QApplication.instance()
    assert app is not None
    app.installEventFilter(painted)
    try:
        stream(view, pieces[120:], tokens=tokens)
    finally:
        app.removeEventFilter(painted)
    lines = (bar.value() - start) / view.fontMetrics().lineSpacing()
    assert view.is_following and lines > 20
    viewport = view.findChild(QWidget, "qt_scrollarea_viewport")
    assert viewport is not None
    # Painting the whole visible column for each new line would cover `lines` viewports;
    # a strip per chunk and per line covers a small part of that.
    whole_view = viewport.width() * viewport.height()
    assert painted.area["chatContent"] < 0.25 * lines * whole_view, (
        painted.area["chatContent"] / whole_view,
        lines,
    )


def backing_store(widget: QWidget) -> QImage:
    """What the window's backing store holds for `widget` (offscreen: its screen grab)."""
    screen = QGuiApplication.primaryScreen()
    window = widget.window()
    shot = screen.grabWindow(window.winId()).toImage()
    corner = widget.mapTo(window, widget.rect().topLeft())
    return shot.copy(corner.x(), corner.y(), widget.width(), widget.height())


@pytest.mark.parametrize("tokens", [False, True], ids=["plain", "tokens view"])
def test_partial_repaints_leave_nothing_stale_while_streaming_and_resizing(
    chat: ChatView, tokens: bool
) -> None:
    view = chat
    assert QGuiApplication.platformName() == "offscreen"  # its grab is the backing store
    view.set_tokens_default(tokens)
    view.begin_reply(message(REPLY_ID, REPLY_ID - 1, "assistant", ""))
    settle()
    pieces = words(500)
    for start, end, width in ((0, 200, 800), (200, 330, 560), (330, 500, 900)):
        view.resize(width, 600)
        settle()
        stream(view, pieces[start:end], tokens=tokens)
        shown = backing_store(view).convertToFormat(QImage.Format.Format_RGB32)
        fresh = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        assert shown.size() == fresh.size()
        assert shown == fresh, f"stale pixels after streaming at width {width}"


class Passes(QObject):
    """Counts the window's paint passes (UpdateRequest) and the paints of one widget."""

    def __init__(self, window: QWidget, name: str) -> None:
        super().__init__()
        self.window, self.name = window, name
        self.passes = self.paints = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.UpdateRequest and watched is self.window:
            self.passes += 1
        elif isinstance(event, QPaintEvent) and watched.objectName() == self.name:
            self.paints += 1
        return False


def test_a_chunk_that_adds_a_line_to_the_tokens_view_is_painted_once(view: ChatView) -> None:
    """A new line grows the tokens, their panel, the block and the column: all of it in the
    pass that paints the chunk, not in a second pass that paints the new line again (the
    panel is one layout deeper than a plain reply's text)."""
    view.resize(800, 2000)  # room for the whole reply: no scrolling
    view.set_tokens_default(True)
    view.begin_reply(message(REPLY_ID, None, "assistant", ""))
    settle()
    counter = Passes(view.window(), "tokenView")
    app = QApplication.instance()
    assert app is not None
    pieces = words(240)
    app.installEventFilter(counter)
    try:
        stream(view, pieces, tokens=True, chunk=4)
    finally:
        app.removeEventFilter(counter)
    chunks = len(pieces) // 4
    assert view.message_block(REPLY_ID).height() > 300  # type: ignore[union-attr]  # lines
    assert counter.paints == counter.passes == chunks, (counter.paints, counter.passes)
