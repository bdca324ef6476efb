"""Keep a streaming paragraph's layout short: its finished lines become blocks of their own.

Qt lays out a whole paragraph (a `QTextBlock`) again whenever text is added to it, so the
cost of adding a chunk grows with the paragraph: in the tokens view, where each token is a
run of its own, some 5 µs per token already in the paragraph, on every chunk. Lines are
broken greedily, so text added at the end never moves a line break before the last line:
those lines are final at the current width. `freeze_lines` cuts the last block before its
last line, marking the first part `CONTINUED` (a wrap, not a paragraph break), so each
chunk lays out one or two lines whatever the paragraph's length. The cut sits exactly at a
line break, in place of the space that hangs there undrawn, so nothing moves on screen and
no position in the document changes.

The breaks are right only for the width they were found at: `thaw_lines` joins the parts
again (before a change of width), and `selected_text` copies a selection with the spaces.
"""

from __future__ import annotations

from PySide6.QtGui import (
    QTextBlockFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)

CONTINUED = int(QTextFormat.Property.UserProperty) + 1
"""Block property: this block goes on in the next one, the space between them replaced by
the block separator (a line wrap, not a paragraph)."""

FREEZE_AT = 3
"""Lines the last block may reach before all but its last line are cut off."""


def freeze_lines(document: QTextDocument) -> int | None:
    """Cut the document's last block before its last line if it has `FREEZE_AT` lines or
    more and that line follows a single space; the position of the cut, or None.

    The space (hanging at the end of its line, so not drawn) becomes the block separator:
    no position moves, so positions kept elsewhere stay right, and the new block keeps the
    space's format as its block character format for `thaw_lines`."""
    block = document.lastBlock()
    document.documentLayout().blockBoundingRect(block)  # lays the block out if it is not
    lines = block.layout()
    if lines is None or lines.lineCount() < FREEZE_AT:
        return None
    at = block.position() + lines.lineAt(lines.lineCount() - 1).textStart() - 1
    if (
        at <= block.position()
        or document.characterAt(at) != " "
        or document.characterAt(at - 1).isspace()
    ):
        return None  # a break inside a word, or after a run of spaces: wait for the next
    cursor = QTextCursor(document)
    cursor.setPosition(at)
    cursor.setPosition(at + 1, QTextCursor.MoveMode.KeepAnchor)
    space = cursor.charFormat()
    live = cursor.blockFormat()
    frozen = QTextBlockFormat(live)
    frozen.setProperty(CONTINUED, True)
    cursor.beginEditBlock()  # one layout pass for both parts
    cursor.removeSelectedText()
    cursor.setBlockFormat(frozen)
    cursor.insertBlock(live, space)
    cursor.endEditBlock()
    return at


def thaw_lines(document: QTextDocument) -> list[int]:
    """Join every `CONTINUED` block to the next with its space again; the positions of
    the spaces put back (no position moves)."""
    cuts: list[int] = []
    block = document.firstBlock()
    while block.isValid():
        if block.blockFormat().property(CONTINUED):
            cuts.append(block.position() + block.length() - 1)
        block = block.next()
    if not cuts:
        return cuts
    cursor = QTextCursor(document)
    cursor.beginEditBlock()
    for at in reversed(cuts):
        cursor.setPosition(at)
        whole = QTextBlockFormat(cursor.blockFormat())
        whole.clearProperty(CONTINUED)
        space = document.findBlock(at + 1).charFormat()
        cursor.deleteChar()  # the separator: the next block joins this one
        cursor.insertText(" ", space)
        cursor.setBlockFormat(whole)
    cursor.endEditBlock()
    return cuts


def selected_text(cursor: QTextCursor) -> str:
    """The plain text of the cursor's selection, with the spaces `freeze_lines` took."""
    start, end = cursor.selectionStart(), cursor.selectionEnd()
    document = cursor.document()
    parts: list[str] = []
    block = document.findBlock(start)
    while block.isValid() and block.position() <= end:
        last = block.position() + block.length() - 1  # its separator
        piece = QTextCursor(document)
        piece.setPosition(max(start, block.position()))
        piece.setPosition(min(end, last), QTextCursor.MoveMode.KeepAnchor)
        parts.append(piece.selection().toPlainText())
        if last < end:
            parts.append(" " if block.blockFormat().property(CONTINUED) else "\n")
        block = block.next()
    return "".join(parts)
