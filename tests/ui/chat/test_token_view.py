"""The tokens view's look of each token: its link, tint, underline, tooltip and text colour."""

from __future__ import annotations

import math

from PySide6.QtGui import QColor, QPalette, QTextCharFormat
from pytestqt.qtbot import QtBot

from app.core.inference.token_data import TokenRecord
from app.ui.chat.token_view import TokenView, tint

PROBS = (0.97, 0.95, 0.8, 0.6, 0.4, 0.2, 0.05, 0.02, 0.97, 0.6, 0.05, 0.99)


def record(i: int, prob: float) -> TokenRecord:
    return TokenRecord(i, f" w{i}".encode(), math.log(prob))


def formats(view: TokenView) -> dict[int, QTextCharFormat]:
    """Each token's format, by its index (the link it carries)."""
    found: dict[int, QTextCharFormat] = {}
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor():
                found[int(fmt.anchorHref())] = fmt
            it += 1
        block = block.next()
    return found


def test_each_token_has_its_own_link_tint_underline_tooltip_and_text_colour(
    qtbot: QtBot,
) -> None:
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(600, 300)
    records = [record(i, p) for i, p in enumerate(PROBS)]
    view.append_records(records[:5])  # streamed in batches, as a reply comes
    view.append_records(records[5:9])
    palette = view.palette()
    first_colour = palette.text().color()
    palette.setColor(QPalette.ColorRole.Text, QColor(20, 90, 40))  # a theme change mid-reply
    view.setPalette(palette)
    view.append_records(records[9:])
    found = formats(view)
    assert sorted(found) == list(range(len(PROBS)))
    for i, r in enumerate(records):
        fmt = found[i]
        assert fmt.background().color() == tint(r.prob, i), i
        assert fmt.fontUnderline() == (r.prob < 0.1), i
        assert fmt.toolTip() == f"{r.text!r}: {r.prob:.1%}"
        colour = QColor(20, 90, 40) if i >= 9 else first_colour
        assert fmt.foreground().color() == colour, i
    assert view.records == tuple(records)
