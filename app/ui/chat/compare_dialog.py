"""Compare two settings on the same turn: the person picks settings A and B for one user
message, Hearth writes a reply with each (A, then B), and the two are shown side by side as
tokens tinted by probability, with their stats and the first token where they part marked
in both. Either can be kept as a version of the chat, and the step where they part (or any
token clicked) can be opened in the sampling explorer.

The dialog only displays and reports what the person did; `CompareController` runs the
replies and keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord
from app.ui.chat.token_strip import visible_piece
from app.ui.chat.token_view import TokenView, legend_html
from app.ui.widgets import named

SIDES = ("A", "B")
CURRENT = "Current sliders"
_SEED_MAX = 2**31 - 1
_MESSAGE_CHARS = 160


def _excerpt(text: str, limit: int = _MESSAGE_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class SettingsForm(QWidget):
    """One side's settings: a starting point (the current sliders or a preset) and the
    samplers people change most (temperature, top-p, top-k, min-p, seed) on top of it.

    Object names (X is A or B): compareBaseX, compareTemperatureX, compareTopPX,
    compareTopKX, compareMinPX, compareSeedX.
    """

    def __init__(
        self,
        side: str,
        current: SamplingSettings,
        presets: Mapping[str, SamplingSettings],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._bases = {CURRENT: current, **presets}
        self._base = current
        self.base = QComboBox(self)
        named(self.base, f"compareBase{side}", f"{side}: start from")
        self.base.addItems(list(self._bases))
        self.base.setToolTip("The settings this side starts from: the sliders now, or a preset")
        self.temperature = self._double(side, "Temperature", 0.0, 5.0, 0.05)
        self.top_p = self._double(side, "TopP", 0.01, 1.0, 0.05, label="top-p")
        self.top_k = QSpinBox(self)
        self.top_k.setRange(0, 1_000_000)
        self.top_k.setSpecialValueText("off")
        named(self.top_k, f"compareTopK{side}", f"{side}: top-k")
        self.min_p = self._double(side, "MinP", 0.0, 1.0, 0.01, label="min-p")
        self.seed = QSpinBox(self)
        self.seed.setRange(-1, _SEED_MAX)
        self.seed.setSpecialValueText("random")
        named(self.seed, f"compareSeed{side}", f"{side}: seed")
        self.seed.setToolTip("The same seed and settings make the same reply; random: a new one")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("Start from"), 0, 0)
        grid.addWidget(self.base, 0, 1, 1, 3)
        for row, column, text, box in (
            (1, 0, "Temperature", self.temperature),
            (1, 2, "Top-p", self.top_p),
            (2, 0, "Top-k", self.top_k),
            (2, 2, "Min-p", self.min_p),
            (3, 0, "Seed", self.seed),
        ):
            label = QLabel(text, self)
            label.setBuddy(box)
            grid.addWidget(label, row, column)
            grid.addWidget(box, row, column + 1)
        self.show_settings(current)
        self.base.currentTextChanged.connect(self._on_base)

    def _double(
        self, side: str, name: str, low: float, high: float, step: float, label: str = ""
    ) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(low, high)
        box.setDecimals(2)
        box.setSingleStep(step)
        named(box, f"compare{name}{side}", f"{side}: {label or name.lower()}")
        return box

    def show_settings(self, settings: SamplingSettings) -> None:
        """Fill the form from `settings` (kept as the base for the samplers not shown)."""
        self._base = settings
        self.temperature.setValue(settings.temperature)
        self.top_p.setValue(settings.top_p)
        self.top_k.setValue(min(settings.top_k, self.top_k.maximum()))
        self.min_p.setValue(settings.min_p)
        self.seed.setValue(-1 if settings.seed is None else min(settings.seed, _SEED_MAX))

    def settings(self) -> SamplingSettings:
        """The base with the form's values."""
        seed = self.seed.value()
        return self._base.with_changes(
            temperature=round(self.temperature.value(), 2),
            top_p=round(self.top_p.value(), 2),
            top_k=self.top_k.value(),
            min_p=round(self.min_p.value(), 2),
            seed=None if seed < 0 else seed,
        )

    @Slot(str)
    def _on_base(self, name: str) -> None:
        settings = self._bases.get(name)
        if settings is not None:
            self.show_settings(settings)


class ReplyColumn(QGroupBox):
    """One side: its settings form, then its reply as tokens, its stats, and its actions.

    Object names (X is A or B): compareColumnX, compareStatusX, compareScrollX (holding
    compareTokensX), compareStatsX, compareExploreX, compareKeepX (and the form's, see
    `SettingsForm`).
    """

    def __init__(
        self,
        side: str,
        current: SamplingSettings,
        presets: Mapping[str, SamplingSettings],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(f"Settings {side}", parent)
        named(self, f"compareColumn{side}", f"Settings {side} and its reply")
        self.side = side
        self.form = SettingsForm(side, current, presets, self)
        self.status = QLabel("", self)
        named(self.status, f"compareStatus{side}", f"{side}: status")
        self.status.setWordWrap(True)
        self.tokens = TokenView()
        named(self.tokens, f"compareTokens{side}", f"{side}: reply as tokens")
        scroll = QScrollArea(self)  # the tokens view is as tall as its text: scroll it here
        named(scroll, f"compareScroll{side}", f"{side}: the reply")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setBackgroundRole(QPalette.ColorRole.Base)
        page = QWidget()
        page.setBackgroundRole(QPalette.ColorRole.Base)
        page_layout = QVBoxLayout(page)
        page_layout.setContentsMargins(4, 4, 4, 4)
        page_layout.addWidget(self.tokens)
        page_layout.addStretch(1)
        scroll.setWidget(page)
        self.stats = QLabel("", self)
        named(self.stats, f"compareStats{side}", f"{side}: how the reply was made")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.explore = QPushButton("Explore this step", self)
        named(self.explore, f"compareExplore{side}", f"{side}: explore the marked step")
        self.explore.setToolTip(
            "Show the whole distribution the model had at the marked token (click a token to "
            "pick another) in the sampling explorer"
        )
        self.keep = QPushButton("Keep as a version", self)
        named(self.keep, f"compareKeep{side}", f"{side}: keep this reply as a version")
        self.keep.setToolTip("Add this reply to the chat as a version of the reply")
        buttons = QHBoxLayout()
        buttons.addWidget(self.explore)
        buttons.addStretch(1)
        buttons.addWidget(self.keep)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.stats)
        layout.addLayout(buttons)
        self.step = -1
        self.tokens.tokenActivated.connect(self.pick_step)
        self.clear()

    def clear(self) -> None:
        """No reply yet."""
        self.tokens.set_records(())
        self.stats.setText("")
        self.status.setText("")
        self.step = -1
        self.explore.setText("Explore this step")
        self.explore.setEnabled(False)
        self.keep.setText("Keep as a version")
        self.keep.setEnabled(False)

    @Slot(int)
    def pick_step(self, index: int) -> None:
        """The step "Explore" opens: token `index` (one past the last: where it stopped)."""
        if 0 <= index <= len(self.tokens.records):
            self.step = index
            self.explore.setText(f"Explore token {index + 1}")
            self.explore.setEnabled(True)


class CompareDialog(QDialog):
    """Settings A and B for one user message, and the two replies side by side.

    Object names: compareDialog, compareMessage, compareHint, compareStartButton,
    compareStopButton, compareLegend, compareDivergence, compareError, compareCloseButton;
    the columns' (see `ReplyColumn`).

    Signals:
        startRequested(object, object): Make a reply with each of these `SamplingSettings`
            (A, then B).
        stopRequested(): Stop the replies being made.
        keepRequested(int): Keep side 0 (A) or 1 (B) as a version of the chat's reply.
        exploreRequested(int, int): Side and token index: show that step's distribution
            in the sampling explorer.
    """

    startRequested = Signal(object, object)
    stopRequested = Signal()
    keepRequested = Signal(int)
    exploreRequested = Signal(int, int)

    def __init__(
        self,
        message: str,
        current: SamplingSettings,
        presets: Mapping[str, SamplingSettings],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        named(self, "compareDialog", "Compare two settings")
        self.setWindowTitle("Compare two settings")
        self.resize(1000, 680)
        self._divergence: int | None = None
        self._running = False
        quoted = QLabel(f"Replies to: “{_excerpt(message)}”", self)
        named(quoted, "compareMessage", "The message both replies answer")
        quoted.setWordWrap(True)
        hint = QLabel(
            "A and B each write one reply, A first, on the model in use. Change one setting "
            "to see what it does. Nothing is added to the chat until you keep a reply; "
            "closing this window discards the others.",
            self,
        )
        named(hint, "compareHint", "How compare works")
        hint.setWordWrap(True)
        self.start = QPushButton("&Compare", self)
        named(self.start, "compareStartButton", "Write a reply with A, then with B")
        self.start.setDefault(True)
        self.start.clicked.connect(self._on_start)
        self.stop = QPushButton("&Stop", self)
        named(self.stop, "compareStopButton", "Stop the replies")
        self.stop.setEnabled(False)
        self.stop.clicked.connect(self.stopRequested)
        legend = QLabel(legend_html(), self)
        named(legend, "compareLegend", "Token colour legend")
        legend.setWordWrap(True)
        self.divergence_label = QLabel("", self)
        named(self.divergence_label, "compareDivergence", "Where the replies part")
        self.divergence_label.setWordWrap(True)
        self.error = QLabel("", self)
        named(self.error, "compareError", "Why the comparison cannot go on")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #cf222e")
        self.error.hide()

        base_b = current.with_changes(
            temperature=1.0 if current.temperature < 0.75 else round(current.temperature - 0.5, 2)
        )
        self.columns = (
            ReplyColumn("A", current, presets, self),
            ReplyColumn("B", current, presets, self),
        )
        self.columns[1].form.show_settings(base_b)
        columns = QHBoxLayout()
        for side, column in enumerate(self.columns):
            columns.addWidget(column, 1)
            column.keep.clicked.connect(lambda _=False, s=side: self.keepRequested.emit(s))
            column.explore.clicked.connect(lambda _=False, s=side: self._on_explore(s))
        actions = QHBoxLayout()
        actions.addWidget(self.start)
        actions.addWidget(self.stop)
        actions.addWidget(self.divergence_label, 1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close_button = close.button(QDialogButtonBox.StandardButton.Close)
        named(close_button, "compareCloseButton", "Close the comparison")
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(quoted)
        layout.addWidget(hint)
        layout.addLayout(actions)
        layout.addWidget(self.error)
        layout.addLayout(columns, 1)
        layout.addWidget(legend)
        layout.addWidget(close)

    # ----- what the controller shows -----

    @property
    def running(self) -> bool:
        """True between `begin` and `end`."""
        return self._running

    @property
    def divergence(self) -> int | None:
        """The first token index where A and B differ (None: not known, or identical)."""
        return self._divergence

    def records(self, side: int) -> tuple[TokenRecord, ...]:
        """The tokens of side 0 (A) or 1 (B) so far."""
        return self.columns[side].tokens.records

    def settings(self, side: int) -> SamplingSettings:
        """The settings of side 0 (A) or 1 (B) as the form says."""
        return self.columns[side].form.settings()

    def begin(self) -> None:
        """Replies are starting: clear both sides, lock the forms."""
        self._running = True
        self._divergence = None
        self.divergence_label.setText("")
        self.show_error("")
        for column in self.columns:
            column.clear()
            column.form.setEnabled(False)
            column.status.setText("Waiting…")
        self.start.setEnabled(False)
        self.stop.setEnabled(True)

    def set_status(self, side: int, text: str) -> None:
        """A side's state in words ("Writing…", "Done", …)."""
        self.columns[side].status.setText(text)

    def append_records(self, side: int, records: Sequence[TokenRecord]) -> None:
        """Tokens of a side's reply as they are written."""
        self.columns[side].tokens.append_records(records)

    def finish_side(self, side: int, status: str, stats: str, keepable: bool) -> None:
        """A side's reply ended: its status, its stats line, and whether it can be kept."""
        column = self.columns[side]
        column.status.setText(status)
        column.stats.setText(stats)
        column.keep.setEnabled(keepable)

    def set_divergence(self, index: int | None) -> None:
        """Mark the first token where the replies differ in both and say what each wrote."""
        self._divergence = index
        a, b = (column.tokens.records for column in self.columns)
        if index is None:
            self.divergence_label.setText(
                "The two replies are the same, token for token." if a else ""
            )
            return
        words = []
        for side, records in zip(SIDES, (a, b), strict=True):
            if index < len(records):
                words.append(f"{side} wrote “{visible_piece(records[index].text)}”")
            else:
                words.append(f"{side} stopped")
        self.divergence_label.setText(
            f"They part at token {index + 1}: {', '.join(words)} (marked in blue)."
        )
        for column in self.columns:
            column.tokens.mark(index)
            column.pick_step(index)

    def set_kept(self, side: int, text: str) -> None:
        """A side was kept as a version: say so and stop offering it."""
        column = self.columns[side]
        column.keep.setEnabled(False)
        column.keep.setText(text)

    def end(self) -> None:
        """The replies are over (finished, stopped or failed): the forms unlock."""
        self._running = False
        for column in self.columns:
            column.form.setEnabled(True)
        self.start.setEnabled(True)
        self.stop.setEnabled(False)

    def show_error(self, text: str) -> None:
        """Say why the comparison cannot go on ("" hides it)."""
        self.error.setText(text)
        self.error.setVisible(bool(text))

    # ----- what the person did -----

    @Slot()
    def _on_start(self) -> None:
        self.startRequested.emit(self.settings(0), self.settings(1))

    def _on_explore(self, side: int) -> None:
        step = self.columns[side].step
        if step >= 0:
            self.exploreRequested.emit(side, step)
