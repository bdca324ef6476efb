"""One message in the chat: `MessageBlock` (header with actions, the text, a reply's status
and stats) and `MessageText` (a read-only text browser sized to its content).

A streaming reply is plain text appended with a cursor at the end of its last text
segment; a new segment starts every ~1,500 characters, so a chunk costs the same at the end
of a long reply as at its start. The Markdown is rendered once, when the reply finishes.
While the tokens view is shown, the streamed text is only kept, not laid out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QPainter,
    QPaintEvent,
    QPalette,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chats.conversation import StoredMessage, reply_summary, settings_summary
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord
from app.ui.chat.edit_box import EditBox
from app.ui.chat.markdown_render import COPY_SCHEME, render_markdown
from app.ui.chat.message_text import MessageText
from app.ui.chat.token_view import TokenPanel
from app.ui.widgets import WrappingLabel
from app.ui.widgets import named as _named


class BlockHost(Protocol):
    """What a message block asks of the view it sits in."""

    @property
    def is_streaming(self) -> bool:
        """True while a reply is being written in the view."""
        ...

    def tree_position(self, message_id: int) -> tuple[int, int]:
        """(index, count) of the message among its versions."""
        ...

    def copy_text(self, text: str) -> None:
        """Put text on the clipboard."""
        ...

    def request_edit(self, message_id: int, text: str) -> None:
        """The person saved an edited user message."""
        ...

    def request_regenerate(self, message_id: int, settings: object) -> None:
        """The person asked for a new version of a reply."""
        ...

    def request_sibling(self, message_id: int, delta: int) -> None:
        """The person asked for the previous (-1) or next (+1) version."""
        ...

    def request_delete(self, message_id: int) -> None:
        """The person asked to delete a message."""
        ...

    def request_token_data(self, message_id: int) -> None:
        """A reply's tokens view opened and needs the reply's token data."""
        ...

    def request_branch(self, message_id: int, index: int, token_id: int) -> None:
        """The person picked a rival of token `index`: branch the reply there."""
        ...

    def request_explore_step(self, message_id: int, index: int) -> None:
        """Show the distribution at token `index` of a reply in the explorer."""
        ...

    def request_compare(self, message_id: int) -> None:
        """The person asked to compare two settings' replies to a user message."""
        ...


SEGMENT_CHARS = 1500
"""A streaming reply goes on in a new text segment at the next line break once its
current one holds this many characters (or at the next space, once one paragraph does):
the cost of a chunk depends on the segment, never on the length of the reply."""

_OPEN_SCHEMES = ("http", "https", "mailto")
_PREVIOUS, _NEXT = "\u2039", "\u203a"  # single angle quotation marks
_STATUS_TEXT = {
    "streaming": "Writing…",
    "cancelled": "Stopped before the end",
    "interrupted": "Interrupted: Hearth closed before this reply finished",
    "error": "Error: this reply failed",
}
_STATUS_LEVEL = {"streaming": "info", "cancelled": "warn", "interrupted": "warn", "error": "error"}
LEVEL_COLOURS = {  # (light, dark)
    "info": ("#57606a", "#9198a1"),
    "warn": ("#9a6700", "#d29922"),
    "error": ("#cf222e", "#f85149"),
}


def is_dark(palette: QPalette) -> bool:
    """True when text sits on a dark background in this palette."""
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


class MessageBlock(QFrame):
    """One message: header with actions, the text, and (for replies) status and stats.

    Object names: messageBlock (property `messageId`), roleLabel, previousVersionButton,
    versionLabel, nextVersionButton, copyButton, editButton and compareButton (user),
    regenerateButton (assistant), deleteButton, messageText, messageEditor, saveEditButton,
    cancelEditButton, replyStatusLabel, replyStatsLabel, regenerateWithSettingsButton.
    """

    def __init__(
        self, view: BlockHost, message: StoredMessage, position: tuple[int, int], dark: bool
    ) -> None:
        super().__init__()
        self._view = view
        self._message = message
        self._dark = dark
        self._code_blocks: tuple[str, ...] = ()
        self._streaming = False
        self._stream_parts: list[str] = []
        self._plain_behind = False  # streamed text not yet in the (hidden) plain segments
        self._segments: list[MessageText] = []
        self._segment_chars = 0
        self._paragraph_chars = 0
        self._editor: QPlainTextEdit | None = None
        self._edit_row: QWidget | None = None
        self._save_edit: QPushButton | None = None
        self.setObjectName("messageBlock")
        self.setProperty("messageId", message.id)
        self.setProperty("role", message.role)
        self.setAccessibleName("Your message" if message.role == "user" else "Assistant reply")
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        if message.role != "user":
            # Only a user's block paints itself (its rounded fill); the others draw nothing
            # of their own, so growing repaints only the new strip (see ChatView._follow_growth).
            self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)

        layout = QVBoxLayout(self)
        # The block grows at once to what its parts need (a streaming text's new line), so
        # its parts are never laid out squeezed into the old height while the column catches
        # up: that squeeze moved the last segment up a line and back, repainting it whole.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)
        layout.addLayout(self._build_header(position))
        self.text = MessageText(self)
        self.text.anchorClicked.connect(self._on_anchor)
        self._body = QVBoxLayout()
        self._body.setContentsMargins(0, 0, 0, 0)
        self._body.setSpacing(0)
        self._body.addWidget(self.text)
        layout.addLayout(self._body)
        self._tokens: TokenPanel | None = None
        self._unseen = QLabel(
            "Not seen by the model for the latest reply: left out so the chat fits the "
            "context window.",
            self,
        )
        _named(self._unseen, "unseenLabel", "Left out of the model's context")
        self._unseen.setWordWrap(True)
        self._unseen.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._unseen.hide()
        layout.addWidget(self._unseen)
        self._status: WrappingLabel | None = None
        self._stats: QLabel | None = None
        self._with_settings: QPushButton | None = None
        if message.is_reply:
            self._build_footer(layout)
        self._show_message(message)

    # ----- building -----

    def _build_header(self, position: tuple[int, int]) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        role = QLabel("You" if self._message.role == "user" else "Assistant")
        _named(role, "roleLabel", "Author")
        font = role.font()
        font.setBold(True)
        role.setFont(font)
        row.addWidget(role)
        row.addStretch(1)
        index, count = position
        self.previous_button: QToolButton | None = None
        self.next_button: QToolButton | None = None
        if count > 1:
            self.previous_button = self._tool_button(
                _PREVIOUS, "previousVersionButton", "Previous version", self._on_previous
            )
            self.previous_button.setEnabled(index > 0)
            label = QLabel(f"{index + 1}/{count}")
            _named(label, "versionLabel", f"Version {index + 1} of {count}")
            self.next_button = self._tool_button(
                _NEXT, "nextVersionButton", "Next version", self._on_next
            )
            self.next_button.setEnabled(index < count - 1)
            row.addWidget(self.previous_button)
            row.addWidget(label)
            row.addWidget(self.next_button)
        self.copy_button = self._tool_button("Copy", "copyButton", "Copy message", self._on_copy)
        row.addWidget(self.copy_button)
        self.tokens_button: QToolButton | None = None
        if self._message.role == "user":
            self.edit_button: QToolButton | None = self._tool_button(
                "Edit", "editButton", "Edit message", self.start_edit
            )
            self.regenerate_button: QToolButton | None = None
            self.compare_button: QToolButton | None = self._tool_button(
                "Compare…", "compareButton", "Compare two settings' replies", self._on_compare
            )
            row.addWidget(self.edit_button)
            row.addWidget(self.compare_button)
        else:
            self.edit_button = None
            self.compare_button = None
            self.regenerate_button = self._tool_button(
                "Regenerate", "regenerateButton", "Regenerate reply", self._on_regenerate
            )
            self.tokens_button = self._tool_button(
                "Tokens", "tokensButton", "Show this reply as tokens", self._on_tokens_toggled
            )
            self.tokens_button.setCheckable(True)
            row.addWidget(self.tokens_button)
            row.addWidget(self.regenerate_button)
        self.delete_button = self._tool_button(
            "Delete", "deleteButton", "Delete message", self._on_delete
        )
        row.addWidget(self.delete_button)
        return row

    def _tool_button(self, text: str, name: str, accessible: str, slot: object) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setAutoRaise(True)
        button.setToolTip(accessible)
        _named(button, name, accessible)
        button.clicked.connect(slot)
        return button

    def _build_footer(self, layout: QVBoxLayout) -> None:
        self._status = WrappingLabel("", self)
        _named(self._status, "replyStatusLabel", "Reply status")
        self._status.hide()
        layout.addWidget(self._status)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self._stats = QLabel(self)
        _named(self._stats, "replyStatsLabel", "How this reply was made")
        self._stats.setWordWrap(True)
        self._stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._stats.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._stats.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        font = self._stats.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self._stats.setFont(font)
        row.addWidget(self._stats, 1)
        self._with_settings = QPushButton("Regenerate with these settings", self)
        _named(
            self._with_settings,
            "regenerateWithSettingsButton",
            "Regenerate with the settings this reply was made with",
        )
        self._with_settings.setFlat(True)
        self._with_settings.clicked.connect(self._on_regenerate_with_settings)
        row.addWidget(self._with_settings, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)

    # ----- state -----

    @property
    def message(self) -> StoredMessage:
        """The stored message on show."""
        return self._message

    @property
    def is_streaming(self) -> bool:
        """True between `start_streaming` and `finish`."""
        return self._streaming

    @property
    def code_blocks(self) -> tuple[str, ...]:
        """The code of each rendered code block (what its Copy link copies)."""
        return self._code_blocks

    def plain_text(self) -> str:
        """The message's text as it stands (the streamed text while streaming)."""
        if self._streaming:
            return "".join(self._stream_parts)
        return self._message.content

    def _show_message(self, message: StoredMessage) -> None:
        self._message = message
        if message.status == "streaming":  # being written now: text may be appended
            self._streaming = True
            self._start_stream_text(message.content)
        else:
            self._render()
        self._show_footer()

    def _render(self) -> None:
        rendered = render_markdown(self._message.content, self._dark)
        self._code_blocks = rendered.code_blocks
        self.text.show_html(rendered.html)

    def _show_footer(self) -> None:
        if self._status is None or self._stats is None or self._with_settings is None:
            return
        message = self._message
        status = "streaming" if self._streaming else message.status
        words = _STATUS_TEXT.get(status)
        note = (message.stats or {}).get("note")
        if status == "interrupted" and isinstance(note, str) and note:
            words = f"Interrupted: {note}"  # a server's connection cut, not Hearth closing
        if words:
            light, dark = LEVEL_COLOURS[_STATUS_LEVEL[status]]
            self._status.setText(words)
            self._status.setProperty("level", _STATUS_LEVEL[status])
            self._status.setStyleSheet(f"color: {dark if self._dark else light}")
            self._status.show()
        else:
            self._status.setProperty("level", None)
            self._status.hide()
        summary = "" if self._streaming else reply_summary(message)
        self._stats.setText(summary)
        self._stats.setToolTip(summary)
        self._stats.setVisible(bool(summary))
        self._with_settings.setVisible(not self._streaming and message.settings is not None)
        if message.settings is not None:
            self._with_settings.setToolTip(
                "Make a new version with: " + settings_summary(message.settings)
            )

    def set_dark(self, dark: bool) -> None:
        """Re-render for a light or a dark palette."""
        if dark == self._dark:
            return
        self._dark = dark
        if not self._streaming:
            self._render()
        self._show_footer()

    def set_actions_enabled(self, enabled: bool) -> None:
        """Edit, compare, regenerate, version and delete actions on or off (copy stays on)."""
        buttons = (
            self.edit_button,
            self.compare_button,
            self.regenerate_button,
            self.delete_button,
        )
        for button in buttons:
            if button is not None:
                button.setEnabled(enabled)
        if self._with_settings is not None:
            self._with_settings.setEnabled(enabled)
        if self._save_edit is not None:
            self._save_edit.setEnabled(enabled)
        index, count = self._view.tree_position(self._message.id)
        if self.previous_button is not None:
            self.previous_button.setEnabled(enabled and index > 0)
        if self.next_button is not None:
            self.next_button.setEnabled(enabled and index < count - 1)

    def start_streaming(self, message: StoredMessage) -> None:
        """Show `message` as a reply being written: plain text, extended by `append`."""
        self.cancel_edit()
        self._message = message
        self._streaming = True
        self._start_stream_text(message.content)
        self._show_footer()

    def append(self, text: str) -> None:
        """Add streamed text at the end (of the last segment, or of a new one). While the
        tokens view is shown the plain text is only kept: it is laid out again if the
        person turns the tokens view off before the reply ends."""
        self._stream_parts.append(text)
        if self.tokens_shown:
            self._plain_behind = True
            return
        cut = self._segment_cut(text)
        if cut is None:
            self._live_segment().append_plain(text)
            self._count(text)
            return
        head, tail = text[:cut], text[cut + 1 :]
        if head:
            self._live_segment().append_plain(head)
        segment = MessageText(self)
        segment.start_plain(tail, continued=True)
        self._body.addWidget(segment)
        segment.setVisible(not self.tokens_shown)
        self._segments.append(segment)
        self._segment_chars = 0
        self._paragraph_chars = 0
        self._count(tail)

    def finish(self, message: StoredMessage) -> None:
        """Show the finished reply: rendered Markdown, status and stats."""
        self._streaming = False
        self._stream_parts = []
        self._clear_segments()
        self._message = message
        self._render()
        self._show_footer()

    @property
    def segment_count(self) -> int:
        """How many text widgets the message uses now (more than one while streaming)."""
        return 1 + len(self._segments)

    def _start_stream_text(self, text: str) -> None:
        self._clear_segments()
        self._stream_parts = [text]
        self._plain_behind = False
        self._code_blocks = ()
        self.text.start_plain(text)
        self._segment_chars = 0
        self._paragraph_chars = 0
        self._count(text)

    def _live_segment(self) -> MessageText:
        return self._segments[-1] if self._segments else self.text

    def _segment_cut(self, text: str) -> int | None:
        """Where to start a new segment in `text` (that character is dropped), or None."""
        if self._segment_chars >= SEGMENT_CHARS:
            newline = text.find("\n")
            if newline >= 0:
                return newline
        if self._paragraph_chars >= SEGMENT_CHARS:
            space = text.find(" ")
            if space >= 0:
                return space
        return None

    def _count(self, text: str) -> None:
        self._segment_chars += len(text)
        newline = text.rfind("\n")
        if newline >= 0:
            self._paragraph_chars = len(text) - newline - 1
        else:
            self._paragraph_chars += len(text)

    def _clear_segments(self) -> None:
        for segment in self._segments:
            self._body.removeWidget(segment)
            segment.hide()
            segment.deleteLater()
        self._segments = []

    def set_unseen(self, unseen: bool) -> None:
        """Mark the message as left out of the latest reply's prompt (or not)."""
        self._unseen.setVisible(unseen)

    @property
    def is_unseen(self) -> bool:
        """True while marked as left out of the latest reply's prompt."""
        return not self._unseen.isHidden()

    # ----- tokens mode (replies) -----

    @property
    def tokens_shown(self) -> bool:
        """True while the reply is drawn as its tokens."""
        return self._tokens is not None and not self._tokens.isHidden()

    @property
    def token_panel(self) -> TokenPanel | None:
        """The tokens view, once it was opened."""
        return self._tokens

    def set_tokens_mode(self, on: bool) -> None:
        """Draw the reply as its tokens (on) or as Markdown (off)."""
        if self.tokens_button is None:
            return
        self.tokens_button.setChecked(on)
        if on and self._tokens is None:
            self._tokens = TokenPanel(self)
            self._tokens.branchRequested.connect(self._on_branch)
            self._tokens.exploreRequested.connect(self._on_explore_step)
            self._body.addWidget(self._tokens)
            self._tokens.hide()
            self._view.request_token_data(self._message.id)
        if self._tokens is not None:
            self._tokens.setVisible(on)
        if not on and self._streaming and self._plain_behind:
            self._start_stream_text("".join(self._stream_parts))
        for segment in (self.text, *self._segments):
            segment.setVisible(not on)

    def set_token_data(
        self,
        records: Sequence[TokenRecord] | None,
        changes: Sequence[tuple[int, SamplingSettings]] = (),
        note: str = "",
    ) -> None:
        """The reply's tokens (None: it has none, `note` says why), and where the settings
        changed along it."""
        if self._tokens is not None:
            self._tokens.set_data(records, note)
            if changes:
                self._tokens.set_settings_changes(changes)

    def append_token_records(self, records: Sequence[TokenRecord]) -> None:
        """Tokens of the reply being written, in order."""
        if self._tokens is not None:
            self._tokens.append_records(records)

    @Slot(bool)
    def _on_tokens_toggled(self, on: bool) -> None:
        self.set_tokens_mode(on)

    @Slot(int, int)
    def _on_branch(self, index: int, token_id: int) -> None:
        if not self._view.is_streaming:
            self._view.request_branch(self._message.id, index, token_id)

    @Slot(int)
    def _on_explore_step(self, index: int) -> None:
        self._view.request_explore_step(self._message.id, index)

    # ----- editing (user messages) -----

    @property
    def editor(self) -> QPlainTextEdit | None:
        """The inline editor while editing, else None."""
        editing = self._edit_row is not None and not self._edit_row.isHidden()
        return self._editor if editing else None

    @Slot()
    def start_edit(self) -> None:
        """Replace the text with an editor holding it (user messages)."""
        if self._message.role != "user":
            return
        if self._editor is None or self._edit_row is None:
            self._build_editor()
        assert self._editor is not None and self._edit_row is not None
        self._editor.setPlainText(self._message.content)
        self.text.hide()
        self._editor.show()
        self._edit_row.show()
        self._editor.setFocus(Qt.FocusReason.OtherFocusReason)
        self._editor.moveCursor(QTextCursor.MoveOperation.End)

    def _build_editor(self) -> None:
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        editor = EditBox(self)
        _named(editor, "messageEditor", "Edit message")
        editor.submitted.connect(self.submit_edit)
        editor.cancelled.connect(self.cancel_edit)
        row = QWidget(self)
        buttons = QHBoxLayout(row)
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addStretch(1)
        cancel = QPushButton("Cancel", row)
        _named(cancel, "cancelEditButton", "Cancel editing")
        cancel.clicked.connect(self.cancel_edit)
        save = QPushButton("Save and send", row)
        _named(save, "saveEditButton", "Send the edited message as a new branch")
        save.setDefault(True)
        save.clicked.connect(self.submit_edit)
        buttons.addWidget(cancel)
        buttons.addWidget(save)
        save.setEnabled(not self._view.is_streaming)
        self._body.addWidget(editor)
        self._body.addWidget(row)
        self._editor, self._edit_row, self._save_edit = editor, row, save

    @Slot()
    def submit_edit(self) -> None:
        """Send the edited text (if it changed and is not empty) and close the editor."""
        if self._editor is None:
            return
        text = self._editor.toPlainText()
        if not text.strip() or self._view.is_streaming:
            return
        self.cancel_edit()
        if text != self._message.content:
            self._view.request_edit(self._message.id, text)

    @Slot()
    def cancel_edit(self) -> None:
        """Close the editor and show the text again."""
        if self._editor is None or self._edit_row is None:
            return
        self._editor.hide()
        self._edit_row.hide()
        self.text.show()

    # ----- actions -----

    @Slot()
    def _on_copy(self) -> None:
        self._view.copy_text(self.plain_text())

    @Slot()
    def _on_compare(self) -> None:
        self._view.request_compare(self._message.id)

    @Slot()
    def _on_regenerate(self) -> None:
        self._view.request_regenerate(self._message.id, None)

    @Slot()
    def _on_regenerate_with_settings(self) -> None:
        if self._message.settings is not None:
            self._view.request_regenerate(self._message.id, self._message.settings)

    @Slot()
    def _on_previous(self) -> None:
        self._view.request_sibling(self._message.id, -1)

    @Slot()
    def _on_next(self) -> None:
        self._view.request_sibling(self._message.id, +1)

    @Slot()
    def _on_delete(self) -> None:
        self._view.request_delete(self._message.id)

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME:
            try:
                code = self._code_blocks[int(url.path())]
            except (ValueError, IndexError):
                return
            self._view.copy_text(code)
        elif url.scheme() in _OPEN_SCHEMES:
            QDesktopServices.openUrl(url)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._message.role == "user":
            palette = self.palette()
            base = palette.color(QPalette.ColorRole.Base)
            accent = palette.color(QPalette.ColorRole.Highlight)
            tint = 0.10 if not self._dark else 0.18
            fill = QColor(
                round(base.red() + (accent.red() - base.red()) * tint),
                round(base.green() + (accent.green() - base.green()) * tint),
                round(base.blue() + (accent.blue() - base.blue()) * tint),
            )
            painter = QPainter(self)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(fill)
            painter.drawRoundedRect(self.rect().adjusted(1, 1, -1, -1), 8, 8)
            painter.end()
        super().paintEvent(event)
