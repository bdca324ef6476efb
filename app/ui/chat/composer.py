"""The composer: where the person writes, sends and stops, with a live token count.

Enter sends, Shift+Enter starts a new line, Esc (or the Stop button) stops the reply
being written. The draft is reported through `draftChanged` at most once per pause in
typing (debounced), so counting it never slows typing down. A context meter shows the
system prompt, history, draft and reply budget against the context length: amber from
85 %, red over 100 %, with a tooltip saying what the overflow policy would leave out.

The composer keeps its text when it asks to send: the owner calls `take_text()` once the
message is on its way, so a send that cannot start yet loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QKeyEvent, QPalette, QResizeEvent, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.messages import Message
from app.ui.chat.token_strip import DraftTokenStrip
from app.ui.widgets import named as _named

DRAFT_DEBOUNCE_MS = 150
WARN_FRACTION = 0.85
MIN_LINES, MAX_LINES = 2, 10
LEVEL_COLOURS = {"warn": "#d29922", "over": "#cf222e"}
"""Meter fill per level; "ok" uses the palette's highlight colour."""
_PREVIEW_CHARS = 48


def meter_level(used: int, limit: int) -> str:
    """ "ok", "warn" (at least 85 % of the context) or "over" (more than all of it)."""
    if limit <= 0:
        return "ok"
    if used > limit:
        return "over"
    return "warn" if used >= WARN_FRACTION * limit else "ok"


def describe_dropped(dropped: Sequence[int] | None, messages: Sequence[Message]) -> str:
    """A note for the meter's tooltip: which messages the overflow policy would leave out.

    `dropped` indexes `messages` (as `TokenCounter.counted` gives it); None means the
    conversation cannot fit even after dropping every older turn.
    """
    if dropped is None:
        return (
            "Even the system prompt and your message alone do not fit: shorten the message, "
            "lower max tokens or raise the context length."
        )
    if not dropped:
        return ""
    names = {"system": "System", "user": "You", "assistant": "Assistant"}
    lines = []
    for index in dropped:
        if 0 <= index < len(messages):
            message = messages[index]
            text = " ".join(message.content.split())
            if len(text) > _PREVIEW_CHARS:
                text = text[: _PREVIEW_CHARS - 1] + "…"
            lines.append(f"• {names[message.role]}: {text}")
    noun = "message" if len(dropped) == 1 else "messages"
    return f"To fit, the oldest {len(dropped)} {noun} would be left out:\n" + "\n".join(lines)


class ContextMeter(QProgressBar):
    """How full the context would be: prompt + draft + reply budget against the limit.

    Its `level` property is "ok", "warn" or "over" (for tests and style sheets).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "contextMeter", "Context used")
        self.setTextVisible(True)
        self.setMinimumWidth(160)
        self.setMaximumWidth(260)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._used = 0
        self._limit = 0
        self._level = ""
        self.set_usage(0, 0)

    @property
    def used(self) -> int:
        """Tokens in use (may exceed the limit)."""
        return self._used

    @property
    def limit(self) -> int:
        """The context length (0: unknown)."""
        return self._limit

    @property
    def level(self) -> str:
        """ "ok", "warn" or "over"."""
        return self._level

    def colour(self) -> QColor:
        """The fill colour for the current level."""
        if self._level in LEVEL_COLOURS:
            return QColor(LEVEL_COLOURS[self._level])
        return self.palette().color(QPalette.ColorRole.Highlight)

    def set_usage(self, used: int, limit: int, dropped_note: str = "") -> None:
        """Show `used` of `limit` tokens; `dropped_note` goes into the tooltip."""
        self._used, self._limit = max(0, used), max(0, limit)
        if self._limit:
            self.setRange(0, self._limit)
            self.setValue(min(self._used, self._limit))
            fraction = self._used / self._limit
            self.setFormat(f"{self._used:,} / {self._limit:,} ({fraction:.0%})")
            tip = (
                f"Context: {self._used:,} of {self._limit:,} tokens ({fraction:.0%}) for the "
                "system prompt, the history, your draft and the room kept for the reply."
            )
            if self._used > self._limit and not dropped_note:
                tip += "\nOver the limit: the oldest turns would be left out."
        else:
            self.setRange(0, 1)
            self.setValue(0)
            self.setFormat("Context: no model")
            tip = "No model is loaded, so the context cannot be measured."
        if dropped_note:
            tip += "\n" + dropped_note
        self.setToolTip(tip)
        self.setAccessibleDescription(tip)
        self._set_level(meter_level(self._used, self._limit))

    def _set_level(self, level: str) -> None:
        if level == self._level:
            return
        self._level = level
        self.setProperty("level", level)
        fill = LEVEL_COLOURS.get(level, "palette(highlight)")
        self.setStyleSheet(
            "QProgressBar#contextMeter { border: 1px solid palette(mid); border-radius: 3px;"
            " background: palette(base); text-align: center; padding: 0px 2px; }"
            f"QProgressBar#contextMeter::chunk {{ background-color: {fill}; }}"
        )


class _DraftEdit(QPlainTextEdit):
    """The text box: Enter sends, Shift+Enter starts a line, Esc stops while busy."""

    def __init__(self, composer: Composer) -> None:
        super().__init__(composer)
        self._composer = composer

    def event(self, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
            and self._composer.is_busy
        ):
            event.accept()  # Esc stops here, once, even where the window binds Esc too
            return True
        return super().event(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.oldSize().width() != event.size().width():
            self._composer._fit_height()  # wrapped lines change with the width

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")  # a plain new line, not a Unicode line separator
            else:
                self._composer.request_send()
            event.accept()
            return
        if key == Qt.Key.Key_Escape and self._composer.is_busy:
            event.accept()
            self._composer.request_stop()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    """The message box with Send and Stop, a draft token counter and a context meter.

    Object names: composer (the text box), sendButton, stopButton, draftTokenLabel,
    showTokensButton, draftTokenStrip (the draft as tokens, shown with showTokensButton),
    contextMeter.

    Signals:
        sendRequested(str): Enter or Send with a non-blank draft while not busy (the text
            stays until the owner calls `take_text()`).
        stopRequested(): Esc or Stop while busy.
        draftChanged(str): The draft, ~150 ms after typing pauses.
        tokenStripToggled(bool): The draft-as-tokens strip was shown or hidden.
    """

    sendRequested = Signal(str)
    stopRequested = Signal()
    draftChanged = Signal(str)
    tokenStripToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composerPanel")
        self._busy = False
        self._send_allowed = True

        self._edit = _DraftEdit(self)
        _named(self._edit, "composer", "Message")
        self._edit.setPlaceholderText("Write a message… (Enter sends, Shift+Enter a new line)")
        self._edit.setTabChangesFocus(True)
        self._edit.textChanged.connect(self._on_text_changed)
        self._edit.document().documentLayout().documentSizeChanged.connect(self._fit_height)

        self._send = QPushButton("Send", self)
        _named(self._send, "sendButton", "Send message")
        self._send.clicked.connect(self.request_send)
        self._stop = QPushButton("Stop", self)
        _named(self._stop, "stopButton", "Stop the reply")
        self._stop.setToolTip("Stop the reply (Esc)")
        self._stop.clicked.connect(self.request_stop)

        self._tokens = QLabel(self)
        _named(self._tokens, "draftTokenLabel", "Tokens in your message")
        self._tokens.setToolTip("Tokens in your message, counted with the model's tokenizer")
        self._tokens.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._meter = ContextMeter(self)
        self._show_tokens = QToolButton(self)
        _named(self._show_tokens, "showTokensButton", "Show my message as tokens")
        self._show_tokens.setText("Tokens")
        self._show_tokens.setCheckable(True)
        self._show_tokens.setToolTip(
            "Show your message split into the tokens the model reads (ids on hover)"
        )
        self._show_tokens.toggled.connect(self._on_show_tokens)
        self._strip = DraftTokenStrip(self)
        self._strip.hide()

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DRAFT_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._emit_draft)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self._tokens)
        row.addWidget(self._show_tokens)
        row.addWidget(self._meter)
        row.addStretch(1)
        row.addWidget(self._stop)
        row.addWidget(self._send)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.setSpacing(4)
        layout.addWidget(self._strip)
        layout.addWidget(self._edit)
        layout.addLayout(row)

        self.set_draft_tokens(0)
        self._fit_height()
        self._update_buttons()

    # ----- API -----

    @property
    def is_busy(self) -> bool:
        """True while a reply is being written (Stop instead of Send)."""
        return self._busy

    @property
    def meter(self) -> ContextMeter:
        """The context meter."""
        return self._meter

    def set_busy(self, busy: bool) -> None:
        """Switch between Send (idle) and Stop (a reply is being written)."""
        self._busy = busy
        self._update_buttons()

    def set_send_enabled(self, enabled: bool) -> None:
        """Allow or refuse sending (e.g. no model loaded); Stop is not affected."""
        self._send_allowed = enabled
        self._update_buttons()

    def set_draft_tokens(self, count: int | None, estimated: str = "") -> None:
        """Show the draft's token count; None while it is being counted or unknown.
        `estimated`: why the count is an estimate (shown as its tooltip), "" if exact."""
        if count is None:
            self._tokens.setText("… tokens")
        else:
            words = f"{count:,} token" + ("" if count == 1 else "s")
            self._tokens.setText(f"≈ {words} (estimated)" if estimated else words)
        self._tokens.setToolTip(
            estimated or "Tokens in your message, counted with the model's tokenizer"
        )

    @property
    def token_strip(self) -> DraftTokenStrip:
        """The draft as tokens (hidden unless shown with the Tokens button)."""
        return self._strip

    @property
    def shows_tokens(self) -> bool:
        """True while the draft-as-tokens strip is on."""
        return self._show_tokens.isChecked()

    def set_draft_pieces(self, pieces: Sequence[tuple[int, str]]) -> None:
        """The draft's tokens (id and text each), for the strip."""
        self._strip.set_pieces(pieces)

    def set_context_usage(self, used: int, limit: int, dropped_note: str = "") -> None:
        """Update the context meter (limit 0: unknown, no model)."""
        self._meter.set_usage(used, limit, dropped_note)

    def text(self) -> str:
        """The draft, unchanged."""
        return self._edit.toPlainText()

    def take_text(self) -> str:
        """Return the draft and clear the box."""
        text = self._edit.toPlainText()
        self._edit.clear()
        return text

    def set_text(self, text: str) -> None:
        """Replace the draft (cursor at its end)."""
        self._edit.setPlainText(text)
        self._edit.moveCursor(QTextCursor.MoveOperation.End)

    def focus_input(self) -> None:
        """Put the keyboard focus in the text box."""
        self._edit.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def request_send(self) -> None:
        """Ask to send the draft (nothing happens while busy or when it is blank)."""
        text = self._edit.toPlainText()
        if self._busy or not self._send_allowed or not text.strip():
            return
        self.sendRequested.emit(text)

    @Slot()
    def request_stop(self) -> None:
        """Ask to stop the reply being written."""
        if self._busy:
            self.stopRequested.emit()

    # ----- internals -----

    @Slot(bool)
    def _on_show_tokens(self, shown: bool) -> None:
        self._strip.setVisible(shown)
        self.tokenStripToggled.emit(shown)

    @Slot()
    def _on_text_changed(self) -> None:
        self._debounce.start()
        self._update_buttons()

    @Slot()
    def _emit_draft(self) -> None:
        self.draftChanged.emit(self._edit.toPlainText())

    def _update_buttons(self) -> None:
        has_text = not self._edit.document().isEmpty()
        self._send.setVisible(not self._busy)
        self._send.setEnabled(not self._busy and self._send_allowed and has_text)
        self._stop.setVisible(self._busy)
        self._stop.setEnabled(self._busy)

    @Slot()
    def _fit_height(self) -> None:
        lines = max(MIN_LINES, min(MAX_LINES, self._edit.document().lineCount()))
        margins = self._edit.contentsMargins()
        frame = 2 * self._edit.frameWidth() + margins.top() + margins.bottom()
        document_margin = 2 * int(self._edit.document().documentMargin())
        height = lines * self._edit.fontMetrics().lineSpacing() + frame + document_margin
        if self._edit.height() != height:
            self._edit.setFixedHeight(height)
