"""A streaming paragraph's finished lines become blocks of their own (`frozen_lines`):
nothing moves on screen, at any width, and what is copied, marked or hovered is unchanged."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QImage, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.core.inference.token_data import TokenRecord
from app.ui.chat import frozen_lines
from app.ui.chat.frozen_lines import CONTINUED, freeze_lines, selected_text, thaw_lines
from app.ui.chat.message_text import MessageText
from app.ui.chat.token_view import TokenView

WORDS = ("the", "keeper", "climbed", "lighthouse", "a", "storm", "grew", "louder,")


def records(count: int) -> list[TokenRecord]:
    """One long paragraph of word tokens, a paragraph break every 150 tokens."""
    out = []
    for i in range(count):
        text = f" {WORDS[i % len(WORDS)]}{i % 10}" + ("\n\n" if i % 150 == 149 else "")
        out.append(TokenRecord(i, text.encode(), math.log(0.3 + 0.6 * ((i * 7) % 10) / 10)))
    return out


def streamed(qtbot: QtBot, items: list[TokenRecord], width: int = 420) -> TokenView:
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(width, 200)
    view.show()
    for i in range(0, len(items), 5):  # a reply's chunks
        view.append_records(items[i : i + 5])
    QCoreApplication.processEvents()
    return view


def image(widget: QWidget) -> QImage:
    return widget.grab().toImage()


def continued_blocks(view: MessageText) -> int:
    block, count = view.document().firstBlock(), 0
    while block.isValid():
        count += bool(block.blockFormat().property(CONTINUED))
        block = block.next()
    return count


@pytest.fixture
def pair(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> tuple[TokenView, TokenView]:
    """The same 400 tokens streamed into a view that freezes lines and one that does not."""
    items = records(400)
    frozen = streamed(qtbot, items)
    monkeypatch.setattr(frozen_lines, "FREEZE_AT", 10**6)
    whole = streamed(qtbot, items)
    monkeypatch.undo()
    return frozen, whole


def test_frozen_lines_look_exactly_like_one_paragraph(pair: tuple[TokenView, TokenView]) -> None:
    frozen, whole = pair
    assert continued_blocks(frozen) > 10 and continued_blocks(whole) == 0
    last = frozen.document().lastBlock().layout()
    assert last is not None and last.lineCount() < frozen_lines.FREEZE_AT
    assert frozen.height() == whole.height()
    assert image(frozen) == image(whole)


def test_a_new_width_joins_the_lines_and_breaks_them_where_it_should(
    pair: tuple[TokenView, TokenView],
) -> None:
    frozen, whole = pair
    for view in pair:
        view.resize(300, 200)
    QCoreApplication.processEvents()
    assert continued_blocks(frozen) == 0
    assert frozen.height() == whole.height()
    assert image(frozen) == image(whole)
    more = records(560)[400:]
    for view in pair:
        view.append_records(more)  # streaming goes on at the new width
    QCoreApplication.processEvents()
    assert continued_blocks(frozen) > 0
    assert image(frozen) == image(whole)


def test_copying_sees_the_text_not_the_cuts(pair: tuple[TokenView, TokenView]) -> None:
    frozen, whole = pair
    for view in pair:
        view.selectAll()
    assert frozen.createMimeDataFromSelection().text() == (
        whole.textCursor().selection().toPlainText()
    )


@pytest.mark.parametrize("index", [0, 37, 151, 233, 398])
def test_marking_a_token_marks_its_text_where_lines_were_cut(qtbot: QtBot, index: int) -> None:
    items = records(400)
    view = streamed(qtbot, items)
    assert continued_blocks(view) > 10
    view.mark(index)
    marked = "".join(text for text, fmt in runs(view) if fmt.fontWeight() == 700)
    assert marked == items[index].text
    by_link: dict[int, str] = {}
    for text, fmt in runs(view):
        if fmt.isAnchor():
            key = int(fmt.anchorHref())
            by_link[key] = by_link.get(key, "") + text
    assert by_link == {i: r.text for i, r in enumerate(items) if "\n" not in r.text} | {
        i: by_link[i] for i, r in enumerate(items) if "\n" in r.text
    }


def runs(view: MessageText) -> list[tuple[str, QTextCharFormat]]:
    """The document's text runs and their formats, in order; a frozen line's cut is the
    space it took, in that space's format."""
    out = []
    block = view.document().firstBlock()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            out.append((fragment.text(), fragment.charFormat()))
            it += 1
        if block.blockFormat().property(CONTINUED):
            out.append((" ", block.next().charFormat()))
        block = block.next()
    return out


def test_freeze_thaw_and_copy_on_plain_text(qtbot: QtBot) -> None:
    text = "Intro.\n\n" + "the keeper climbed the stairs of the old lighthouse " * 12
    view = MessageText()
    qtbot.addWidget(view)
    view.resize(300, 400)
    view.show()
    view.start_plain(text)
    cut = freeze_lines(view.document())
    assert cut is not None and view.document().blockCount() == 4
    assert view.document().characterAt(cut) == "\u2029"  # the space became the cut
    everything = QTextCursor(view.document())
    everything.select(QTextCursor.SelectionType.Document)
    assert selected_text(everything) == text
    assert view.toPlainText() != text  # the cut is a real block separator
    assert thaw_lines(view.document()) == [cut]
    assert view.toPlainText() == text and continued_blocks(view) == 0
    view.start_plain("short")
    assert freeze_lines(view.document()) is None  # one line: nothing to freeze
