"""A reply drawn as its tokens, tinted by how likely the model found each one, and the
details of one token: its rivals as bars, the entropy of that step, the settings in force
and which rivals those settings cut. Clicking a rival asks for a branch from there.

The tint is one hue (Okabe-Ito vermillion) whose strength grows as the probability falls,
so it reads the same for every kind of colour vision; tokens under 10% are also
underlined, so the cue does not rest on colour alone. Token boundaries show as alternating
shades. Everything shown is a lookup in the reply's stored `TokenRecord`s: hovering costs
no computation beyond formatting one panel.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from PySide6.QtCore import QMimeData, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QResizeEvent, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chats.conversation import settings_summary
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord
from app.ui.chat.frozen_lines import freeze_lines, selected_text, thaw_lines
from app.ui.chat.message_text import MessageText
from app.ui.chat.token_strip import visible_piece
from app.ui.widgets import WrappingLabel, named

BINS = (0.9, 0.7, 0.5, 0.3, 0.1, 0.0)
"""Lower edges of the probability bins, most likely first."""
_ALPHAS = (0.0, 0.18, 0.34, 0.5, 0.66, 0.85)
_HUE = (213, 94, 0)  # Okabe-Ito vermillion
_BOUNDARY = ("rgba(127,127,127,0.10)", "rgba(127,127,127,0.22)")
_UNDERLINE_BELOW = 0.1
_MARK = (0, 114, 178)  # Okabe-Ito blue: a marked token stands apart from every tint


def probability_bin(prob: float) -> int:
    """Which bin (0 = at least 90%, 5 = under 10%) a probability falls in."""
    for i, edge in enumerate(BINS):
        if prob >= edge:
            return i
    return len(BINS) - 1


def tint(prob: float, index: int) -> QColor:
    """The background of a token: its bin's tint over the boundary shade of its position."""
    alpha = _ALPHAS[probability_bin(prob)]
    if alpha == 0.0:
        grey = 127
        return QColor(grey, grey, grey, 26 if index % 2 == 0 else 56)
    return QColor(*_HUE, round(alpha * 255))


def legend_html() -> str:
    """A one-line legend of the bins, for the label above a tokens view."""
    names = ("≥90%", "70-90%", "50-70%", "30-50%", "10-30%", "<10%")
    swatches = []
    for i, name in enumerate(names):
        alpha = max(_ALPHAS[i], 0.1)
        colour = f"rgba({_HUE[0]},{_HUE[1]},{_HUE[2]},{alpha})"
        underline = "text-decoration:underline;" if i == len(names) - 1 else ""
        swatches.append(
            f'<span style="background:{colour};{underline}">&nbsp;{html.escape(name)}&nbsp;</span>'
        )
    return "Tinted by the model's probability: " + " ".join(swatches)


def entropy_bits(record: TokenRecord) -> tuple[float, bool]:
    """Entropy of the step in bits from the stored alternatives, and whether it is only a
    lower bound (the rest of the vocabulary is counted as one lump)."""
    probs = [alt.prob for alt in record.top if alt.prob > 0.0]
    if not probs:
        probs = [record.prob] if record.prob > 0.0 else []
    total = sum(probs)
    bits = -sum(p * math.log2(p) for p in probs)
    rest = max(0.0, 1.0 - total)
    if rest > 1e-6:
        bits -= rest * math.log2(rest)
        return bits, True
    return bits, False


def cut_by(record: TokenRecord, settings: SamplingSettings | None) -> list[str]:
    """For each alternative, the first of `settings`' samplers (in llama.cpp's order) that
    removes it ("" if none), re-run on the stored alternatives: exact for top-k and min-p;
    top-p and typical-p renormalise among them."""
    top = record.top
    if settings is None or not top or settings.mirostat:
        return [""] * len(top)
    if settings.is_greedy:
        return [""] + ["greedy"] * (len(top) - 1)
    logits = [alt.logprob for alt in top]
    off = {"top_k": 0, "typical_p": 1.0, "top_p": 1.0, "min_p": 0.0}
    stages: list[tuple[str, dict[str, float | int]]] = [
        ("top-k", {"top_k": settings.top_k}),
        ("typical-p", {"typical_p": settings.typical_p}),
        ("top-p", {"top_p": settings.top_p}),
        ("min-p", {"min_p": settings.min_p}),
    ]
    from app.core.inference.sampler_preview import preview  # numpy: not at start-up

    reasons = [""] * len(top)
    enabled: dict[str, float | int] = {}
    for name, change in stages:
        enabled.update(change)
        result = preview(logits, settings.with_changes(**{**off, **enabled}))
        if result is None:
            break
        for i, kept in enumerate(result.kept):
            if not kept and not reasons[i]:
                reasons[i] = name
    return reasons


class TokenView(MessageText):
    """A reply as tokens: each token an anchor (href = its index), tinted by probability.

    Object name: tokenView.

    Signals:
        tokenHovered(int): The pointer or the keyboard is on token `index` (-1: none).
        tokenActivated(int): Token `index` was clicked or activated with Enter.
    """

    tokenHovered = Signal(int)
    tokenActivated = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "tokenView", "Reply as tokens")
        self._records: list[TokenRecord] = []
        self._starts: list[tuple[int, int]] = []
        self._marked = -1
        self._cursor_end: QTextCursor | None = None
        self._cut = False  # `freeze_lines` has cut a paragraph since the last thaw
        self._looks: dict[tuple[int, int, bool], QTextCharFormat] = {}  # see `_append`
        self._looks_text: int | None = None  # the text colour they were made with
        self.highlighted.connect(self._on_highlighted)
        self.anchorClicked.connect(self._on_clicked)

    @property
    def records(self) -> tuple[TokenRecord, ...]:
        """The tokens shown."""
        return tuple(self._records)

    def set_records(self, records: Sequence[TokenRecord]) -> None:
        """Show these tokens, replacing any."""
        self._records = []
        self._starts = []
        self._marked = -1
        self.clear()
        self._cut = False
        self._cursor_end = QTextCursor(self.document())
        self.append_records(records)

    def append_records(self, records: Sequence[TokenRecord]) -> None:
        """Add tokens at the end (a streaming reply): only the new ones are laid out."""
        if self._cursor_end is None:
            self._cursor_end = QTextCursor(self.document())
            self._cursor_end.movePosition(QTextCursor.MoveOperation.End)
        cursor = self._cursor_end
        with self.appending():
            self._append(cursor, records)
            if freeze_lines(self.document()) is not None:  # a chunk lays out a line or two
                self._cut = True
        self.setAccessibleDescription(f"{len(self._records)} tokens")

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._cut and event.size().width() != event.oldSize().width():
            # Frozen lines broke where the old width did: join them, the new width breaks
            # them again.
            thaw_lines(self.document())
            self._cut = False
        super().resizeEvent(event)

    def createMimeDataFromSelection(self) -> QMimeData:
        """Copy the selected text as plain text (the frozen lines' breaks as the spaces
        they were)."""
        data = QMimeData()
        data.setText(selected_text(self.textCursor()))
        return data

    def _append(self, cursor: QTextCursor, records: Sequence[TokenRecord]) -> None:
        cursor.beginEditBlock()  # one layout pass for the whole batch
        text_brush = self.palette().text()
        # A few looks repeat along a reply (a tint, the shade of an even or odd position,
        # underlined or not): each is built once, and each token's format is a copy of its
        # look with its own link and tooltip. Qt calls from Python cost about a microsecond
        # each, and a streaming reply makes thousands.
        looks = self._looks
        if self._looks_text != text_brush.color().rgba():  # the palette changed
            looks.clear()
            self._looks_text = text_brush.color().rgba()
        for record in records:
            index = len(self._records)
            self._records.append(record)
            prob = record.prob
            key = (probability_bin(prob), index % 2, prob < _UNDERLINE_BELOW)
            look = looks.get(key)
            if look is None:
                look = QTextCharFormat()
                look.setAnchor(True)
                look.setBackground(tint(prob, index))
                look.setForeground(text_brush)
                look.setFontUnderline(prob < _UNDERLINE_BELOW)
                looks[key] = look
            fmt = QTextCharFormat(look)
            fmt.setAnchorHref(str(index))
            fmt.setToolTip(f"{record.text!r}: {prob:.1%}")
            text = record.text
            start = cursor.position()
            cursor.insertText(visible_piece(text) if not text.strip() else text, fmt)
            self._starts.append((start, cursor.position()))
            if "\n" in text:
                cursor.insertText("\n", QTextCharFormat())
        cursor.endEditBlock()

    @property
    def marked(self) -> int:
        """The token marked with `mark` (-1: none)."""
        return self._marked

    def mark(self, index: int) -> None:
        """Set token `index` apart (white on blue, bold): a token the person should look at,
        such as where two replies part. One token at most: `set_records` clears the mark."""
        if not 0 <= index < len(self._records) or self._marked >= 0:
            return
        start, end = self._starts[index]
        cursor = QTextCursor(self.document())
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(*_MARK))
        fmt.setForeground(QColor("white"))
        fmt.setFontWeight(700)
        cursor.mergeCharFormat(fmt)
        self._marked = index
        self.setAccessibleDescription(f"{len(self._records)} tokens; token {index + 1} marked")

    @Slot(QUrl)
    def _on_highlighted(self, url: QUrl) -> None:
        text = url.toString()
        self.tokenHovered.emit(int(text) if text.isdigit() else -1)

    @Slot(QUrl)
    def _on_clicked(self, url: QUrl) -> None:
        text = url.toString()
        if text.isdigit():
            self.tokenActivated.emit(int(text))


class TokenDetails(QFrame):
    """One token's details: its rivals as bars (the chosen one marked), the entropy of
    that step, the settings in force and which rivals they cut. A rival's button asks for
    a branch.

    Object names: tokenDetails, tokenDetailsTitle, tokenAlternativeButton (one per rival,
    property `tokenId`), tokenEntropyLabel, tokenSettingsLabel, exploreStepButton.

    Signals:
        alternativeChosen(int, int): Token index and the id of the rival to branch with.
        exploreRequested(int): Show this step's whole distribution in the explorer.
    """

    alternativeChosen = Signal(int, int)
    exploreRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "tokenDetails", "Token details")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._index = -1
        self._title = QLabel(self)
        named(self._title, "tokenDetailsTitle", "Token")
        self._rows = QGridLayout()
        self._rows.setHorizontalSpacing(8)
        self._rows.setVerticalSpacing(1)
        self._entropy = QLabel(self)
        named(self._entropy, "tokenEntropyLabel", "Entropy of this step")
        self._settings = QLabel(self)
        named(self._settings, "tokenSettingsLabel", "Settings in force")
        self._settings.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 6)
        layout.setSpacing(3)
        layout.addWidget(self._title)
        layout.addLayout(self._rows)
        layout.addWidget(self._entropy)
        layout.addWidget(self._settings)
        self._explore = QPushButton("Explore this step", self)
        named(self._explore, "exploreStepButton", "Explore this step in the sampling explorer")
        self._explore.setToolTip(
            "Show the whole distribution the model had here, under the current samplers"
        )
        self._explore.clicked.connect(self._on_explore)
        layout.addWidget(self._explore)
        self._buttons: list[QPushButton] = []
        self.hide()

    @property
    def index(self) -> int:
        """The token shown (-1: none)."""
        return self._index

    @property
    def buttons(self) -> tuple[QPushButton, ...]:
        """One button per rival, best first."""
        return tuple(self._buttons)

    def show_token(
        self, index: int, total: int, record: TokenRecord, settings: SamplingSettings | None
    ) -> None:
        """Fill the panel for token `index` of `total` and show it."""
        self._index = index
        while self._rows.count():
            item = self._rows.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self._buttons = []
        self._title.setText(
            f"<b>Token {index + 1} of {total}</b>: "
            f"<code>{html.escape(visible_piece(record.text))}</code> — {record.prob:.1%}"
        )
        reasons = cut_by(record, settings)
        for row, (alt, reason) in enumerate(zip(record.top, reasons, strict=True)):
            chosen = alt.token_id == record.token_id and alt.piece == record.piece
            button = QPushButton(visible_piece(alt.text), self)
            button.setFlat(True)
            button.setProperty("tokenId", alt.token_id)
            notes = ["chosen"] if chosen else []
            if reason:
                notes.append(f"cut by {reason}")
            described = f"{alt.text!r}, {alt.prob:.1%}" + (f", {', '.join(notes)}" if notes else "")
            named(button, "tokenAlternativeButton", f"Alternative {described}")
            button.setToolTip(
                "The chosen token" if chosen else f"Branch here: continue with {alt.text!r}"
            )
            button.setEnabled(not chosen and alt.token_id >= 0)
            button.clicked.connect(self._on_alternative)
            bar = QProgressBar(self)
            bar.setRange(0, 1000)
            bar.setValue(round(alt.prob * 1000))
            bar.setTextVisible(False)
            bar.setMaximumHeight(10)
            bar.setAccessibleName(f"{alt.prob:.1%}")
            percent = QLabel(f"{alt.prob:.1%}", self)
            note = QLabel(" · ".join(notes), self)
            self._rows.addWidget(button, row, 0)
            self._rows.addWidget(bar, row, 1)
            self._rows.addWidget(percent, row, 2)
            self._rows.addWidget(note, row, 3)
            self._buttons.append(button)
        bits, lower_bound = entropy_bits(record)
        self._entropy.setText(
            f"Entropy of this step: {'≥ ' if lower_bound else ''}{bits:.2f} bits"
            + (f" (the top {len(record.top)} and the rest as one)" if lower_bound else "")
        )
        self._settings.setText(
            "Settings in force: " + (settings_summary(settings) if settings else "not recorded")
        )
        self.setAccessibleDescription(self._title.text())
        self.show()

    @Slot()
    def _on_explore(self) -> None:
        if self._index >= 0:
            self.exploreRequested.emit(self._index)

    @Slot()
    def _on_alternative(self) -> None:
        button = self.sender()
        if isinstance(button, QPushButton) and self._index >= 0:
            self.alternativeChosen.emit(self._index, int(button.property("tokenId")))


class TokenPanel(QWidget):
    """What a reply block shows in tokens mode: the legend, the tokens, and the details of
    the token under the pointer or the keyboard (a click pins it, so its rivals can be
    clicked).

    Object names: tokenLegend, tokenView, tokenDetails (see there), noTokenDataLabel.

    Signals:
        branchRequested(int, int): Token index and the rival's id to branch with.
        exploreRequested(int): Explore the distribution at token `index`.
    """

    branchRequested = Signal(int, int)
    exploreRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._legend = WrappingLabel(legend_html(), self)
        named(self._legend, "tokenLegend", "Token colour legend")
        self._view = TokenView(self)
        self._details = TokenDetails(self)
        self._missing = QLabel(self)
        named(self._missing, "noTokenDataLabel", "No token data")
        self._missing.setWordWrap(True)
        self._missing.hide()
        self._pinned = -1
        self._settings: list[tuple[int, SamplingSettings]] = []
        # Paints nothing of its own and grows at the bottom: a taller panel repaints only its
        # new strip, and it grows at once to what its parts need (see MessageBlock).
        self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        layout = self._layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self._legend)
        layout.addWidget(self._view)
        layout.addWidget(self._missing)
        layout.addWidget(self._details)
        self._view.tokenHovered.connect(self._on_hovered)
        self._view.tokenActivated.connect(self._on_activated)
        self._details.alternativeChosen.connect(self.branchRequested)
        self._details.exploreRequested.connect(self.exploreRequested)

    @property
    def view(self) -> TokenView:
        """The tokens."""
        return self._view

    @property
    def details(self) -> TokenDetails:
        """The details of one token."""
        return self._details

    def set_data(self, records: Sequence[TokenRecord] | None, note: str = "") -> None:
        """Show these tokens; None: the reply has no token data (`note` says why)."""
        self._pinned = -1
        self._details.hide()
        self._settings = []
        if records is None:
            self._view.set_records(())
            self._view.hide()
            self._legend.hide()
            self._missing.setText(note or "This reply has no token data.")
            self._missing.show()
            return
        self._missing.hide()
        self._legend.show()
        self._view.show()
        self._view.set_records(())
        self.append_records(records)

    def append_records(self, records: Sequence[TokenRecord]) -> None:
        """Add tokens of a reply being written."""
        start = len(self._view.records)
        for offset, record in enumerate(records):
            if record.settings is not None and (
                not self._settings or self._settings[-1][1] != record.settings
            ):
                self._settings.append((start + offset, record.settings))
        self._view.append_records(records)
        # A new line made the tokens taller: grow now, not at the next event-loop pass,
        # so the block and the column above grow in the same pass as the paint (a panel
        # grown later repaints its new strip, and the tokens under it, a second time).
        self._layout.activate()

    def set_settings_changes(self, changes: Sequence[tuple[int, SamplingSettings]]) -> None:
        """Where the settings changed along the reply (from stored token data)."""
        self._settings = sorted(changes, key=lambda change: change[0])

    def settings_at(self, index: int) -> SamplingSettings | None:
        """The sampler settings in force for token `index`."""
        current = None
        for start, settings in self._settings:
            if start > index:
                break
            current = settings
        return current

    def show_details(self, index: int) -> None:
        """Show the details of token `index`."""
        records = self._view.records
        if 0 <= index < len(records):
            self._details.show_token(index, len(records), records[index], self.settings_at(index))

    @Slot(int)
    def _on_hovered(self, index: int) -> None:
        if self._pinned < 0 and index >= 0:
            self.show_details(index)

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        self._pinned = -1 if self._pinned == index else index
        self.show_details(index)
