"""The chat area: a conversation's active path as message blocks, and a reply streaming in.

Each message is a `MessageBlock`: a header (who, version arrows, actions), the text (a
read-only `QTextBrowser` sized to its content, so text is selectable and links work), and
under a reply its status and stats. Only the newest messages are built when a conversation
opens; older ones are built in batches when the person scrolls up (or presses "Show
earlier messages"), so a 500-message chat opens at the cost of a screenful.

A streaming reply is plain text appended with a cursor at the end of its last text
segment; a new segment starts every ~1,500 characters (at a line break, or at a space in
one very long paragraph), so a chunk costs the same at the end of a 4,000-token reply as
at its start: Qt lays out only the paragraph that changed, in a document of bounded size.
The Markdown is rendered once, when the reply finishes, into a single document.

The view follows the bottom while the person has not scrolled away from it; once they
have, a "Jump to latest" button takes them back and resumes following.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QCoreApplication, QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QGuiApplication,
    QPalette,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chats.conversation import MessageTree, StoredMessage, unseen_message_ids
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord
from app.ui.chat.message_block import LEVEL_COLOURS, MessageBlock, is_dark
from app.ui.widgets import flat_scroll_bar
from app.ui.widgets import named as _named

INITIAL_BLOCKS = 16
"""Messages built when a conversation opens (the newest ones)."""
BATCH_BLOCKS = 24
"""Older messages built at a time when the person scrolls up."""
FOLLOW_SLACK_PX = 8
"""Within this distance of the bottom the view counts as "at the bottom"."""
LOAD_EARLIER_MARGIN_PX = 200
"""Build older messages when the view comes this close to the top."""


class ChatView(QWidget):
    """A conversation's active path, with a reply streaming in at the end.

    Object names: chatView, chatScrollArea, loadEarlierButton, errorNotice,
    errorNoticeLabel, dismissErrorButton, jumpToLatestButton; each message is a
    `MessageBlock` (see there).

    Signals:
        editRequested(int, str): A user message's id and its edited text (a new branch).
        regenerateRequested(int, object): A reply's id and the `SamplingSettings` to make
            the new version with, or None for the current settings.
        siblingRequested(int, int): A message's id and -1 / +1: show its previous / next
            version.
        deleteRequested(int): A message's id.
        copied(str): Text put on the clipboard (a message, or a code block).
        tokenDataRequested(int): A reply's tokens view opened: answer with
            `set_token_data` (at once or later).
        branchRequested(int, int, int): A reply's id, a token index and a rival token's
            id: make a new version that has the rival there and goes on from it.
        exploreStepRequested(int, int): A reply's id and a token index: show that step's
            distribution in the explorer.
        compareRequested(int): A user message's id: compare the replies two settings make
            to it.
    """

    editRequested = Signal(int, str)
    regenerateRequested = Signal(int, object)
    siblingRequested = Signal(int, int)
    deleteRequested = Signal(int)
    copied = Signal(str)
    tokenDataRequested = Signal(int)
    branchRequested = Signal(int, int, int)
    exploreStepRequested = Signal(int, int)
    compareRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "chatView", "Conversation")
        self._path: list[StoredMessage] = []
        self._tree = MessageTree(())
        self._blocks: dict[int, MessageBlock] = {}
        self._first_built = 0
        self._streaming_id: int | None = None
        self._dark = is_dark(self.palette())
        self._following = True
        self._anchor_from_bottom: int | None = None
        self._scrolling = False
        self._tokens_default = False
        self._unseen: set[int] = set()

        self._scroll = QScrollArea(self)
        _named(self._scroll, "chatScrollArea", "Messages")
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        flat_scroll_bar(self._scroll, "base")
        self._content = QWidget()
        self._content.setObjectName("chatContent")
        self._content.setBackgroundRole(QPalette.ColorRole.Base)
        self._content.setAutoFillBackground(True)
        # A plain fill, children placed from the top: a taller column repaints only its new
        # strip (the column grows at every new line of a streaming reply).
        self._content.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self._column = QVBoxLayout(self._content)
        self._column.setContentsMargins(12, 8, 12, 8)
        self._column.setSpacing(8)

        self._load_earlier = QPushButton(self._content)
        _named(self._load_earlier, "loadEarlierButton", "Show earlier messages")
        self._load_earlier.setFlat(True)
        self._load_earlier.clicked.connect(self.load_earlier)
        self._load_earlier.hide()
        self._column.addWidget(self._load_earlier, 0, Qt.AlignmentFlag.AlignHCenter)

        self._notice = QFrame(self._content)
        _named(self._notice, "errorNotice", "Error")
        notice_row = QHBoxLayout(self._notice)
        notice_row.setContentsMargins(10, 6, 6, 6)
        self._notice_label = QLabel(self._notice)
        _named(self._notice_label, "errorNoticeLabel", "Error message")
        self._notice_label.setWordWrap(True)
        self._notice_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dismiss = QToolButton(self._notice)
        dismiss.setText("✕")
        dismiss.setAutoRaise(True)
        _named(dismiss, "dismissErrorButton", "Dismiss the error")
        dismiss.clicked.connect(self.clear_error)
        notice_row.addWidget(self._notice_label, 1)
        notice_row.addWidget(dismiss, 0, Qt.AlignmentFlag.AlignTop)
        self._notice.hide()
        self._column.addWidget(self._notice)
        self._column.addStretch(1)
        self._style_notice()

        self._scroll.setWidget(self._content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)

        self._jump = QPushButton("Jump to latest ↓", self)
        _named(self._jump, "jumpToLatestButton", "Jump to the latest message")
        self._jump.clicked.connect(self.jump_to_latest)
        self._jump.hide()

        self._load_timer = QTimer(self)
        self._load_timer.setSingleShot(True)
        self._load_timer.setInterval(0)
        self._load_timer.timeout.connect(self._load_earlier_if_near_top)

        self._follow_timer = QTimer(self)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(0)
        self._follow_timer.timeout.connect(self._follow_growth)

        bar = self._scroll.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range_changed)
        bar.valueChanged.connect(self._on_value_changed)

    # ----- the contract -----

    def set_conversation(self, path: Sequence[StoredMessage], tree: MessageTree) -> None:
        """Show this active path (root first), replacing everything on show.

        Only the newest messages are built now; older ones when the person scrolls up.
        """
        self._content.setUpdatesEnabled(False)
        try:
            for block in self._blocks.values():
                self._column.removeWidget(block)
                block.hide()
                block.deleteLater()
            self._blocks.clear()
            self._path = list(path)
            self._tree = tree
            latest = next((m for m in reversed(self._path) if m.is_reply), None)
            self._unseen = set(unseen_message_ids(latest)) if latest is not None else set()
            self._streaming_id = None
            self._anchor_from_bottom = None
            self._hide_error()
            self._first_built = len(self._path)
            self._build_older(INITIAL_BLOCKS)
            for message in self._path:
                if message.status == "streaming" and message.id in self._blocks:
                    self._streaming_id = message.id
            self._update_actions()
        finally:
            self._content.setUpdatesEnabled(True)
        self._follow()
        self._schedule_load_check()

    def append_message(self, message: StoredMessage, tree: MessageTree | None = None) -> None:
        """Add one finished message at the end without rebuilding the view (a cheaper
        `set_conversation` for a message sent on the branch on show); `tree`, if given,
        replaces the tree that version arrows are counted from."""
        if tree is not None:
            self._tree = tree
        if message.id in self._blocks:
            return
        self._hide_error()
        self._path.append(message)
        block = self._make_block(message)
        self._column.insertWidget(self._notice_index(), block)
        self._blocks[message.id] = block
        self._update_actions()
        self._follow()

    def begin_reply(self, message: StoredMessage) -> None:
        """Start showing `message` (an assistant reply) as it is written, at the end."""
        self._hide_error()
        block = self._blocks.get(message.id)
        if block is None:
            if not any(m.id == message.id for m in self._path):
                self._path.append(message)
            block = self._make_block(message)
            self._column.insertWidget(self._notice_index(), block)
            self._blocks[message.id] = block
        block.start_streaming(message)
        self._streaming_id = message.id
        self._update_actions()
        self._follow()

    def append_reply_text(self, message_id: int, text: str) -> None:
        """Add streamed text to reply `message_id` (ignored if it is not streaming here)."""
        block = self._blocks.get(message_id)
        if block is None or not block.is_streaming or not text:
            return
        self._anchor_from_bottom = None
        block.append(text)

    def finish_reply(self, message: StoredMessage) -> None:
        """Show reply `message` finished: its Markdown, status and stats."""
        block = self._blocks.get(message.id)
        if block is None:
            return
        self._anchor_from_bottom = None
        self._path = [message if m.id == message.id else m for m in self._path]
        block.finish(message)
        if self._streaming_id == message.id:
            self._streaming_id = None
        self._update_actions()

    def show_error(self, text: str) -> None:
        """Show an error notice under the last message."""
        self._notice_label.setText(text)
        self._notice.show()
        self._anchor_from_bottom = None

    # ----- other public API -----

    @property
    def is_streaming(self) -> bool:
        """True while a reply begun here has not finished."""
        return self._streaming_id is not None

    @property
    def is_following(self) -> bool:
        """True while the view keeps the newest text in sight."""
        return self._following

    @property
    def shown_path(self) -> tuple[StoredMessage, ...]:
        """The active path on show (with a streaming reply, as last given)."""
        return tuple(self._path)

    def message_block(self, message_id: int) -> MessageBlock | None:
        """The block of this message, if it is built."""
        return self._blocks.get(message_id)

    def built_message_ids(self) -> list[int]:
        """Ids of the messages built so far, oldest first."""
        return [m.id for m in self._path[self._first_built :]]

    def tree_position(self, message_id: int) -> tuple[int, int]:
        """(index among its versions, number of versions); (0, 1) if unknown."""
        if message_id not in self._tree:
            return 0, 1
        return self._tree.sibling_position(message_id)

    @Slot()
    def clear_error(self) -> None:
        """Hide the error notice."""
        self._hide_error()

    @Slot()
    def jump_to_latest(self) -> None:
        """Scroll to the bottom and follow new text again."""
        self._following = True
        self._anchor_from_bottom = None
        self._jump.hide()
        self._scroll_to_bottom()

    @Slot()
    def load_earlier(self) -> None:
        """Build the next batch of older messages, keeping the view where it is."""
        if self._first_built == 0:
            return
        bar = self._scroll.verticalScrollBar()
        self._anchor_from_bottom = bar.maximum() - bar.value()
        self._build_older(BATCH_BLOCKS)
        self._update_actions()
        self._schedule_load_check()

    # ----- blocks -----

    def _make_block(self, message: StoredMessage) -> MessageBlock:
        block = MessageBlock(self, message, self.tree_position(message.id), self._dark)
        block.setParent(self._content)
        if self._tokens_default and message.is_reply:
            block.set_tokens_mode(True)
        block.set_unseen(message.id in self._unseen)
        return block

    def _build_older(self, count: int) -> None:
        start = max(0, self._first_built - count)
        made = [self._make_block(m) for m in self._path[start : self._first_built]]
        for offset, block in enumerate(made):
            self._column.insertWidget(1 + offset, block)
            self._blocks[block.message.id] = block
        self._first_built = start
        self._show_load_earlier()

    def _show_load_earlier(self) -> None:
        left = self._first_built
        self._load_earlier.setVisible(left > 0)
        if left:
            noun = "message" if left == 1 else "messages"
            self._load_earlier.setText(f"Show {left} earlier {noun}")

    def _notice_index(self) -> int:
        return self._column.indexOf(self._notice)

    def _update_actions(self) -> None:
        enabled = self._streaming_id is None
        for block in self._blocks.values():
            block.set_actions_enabled(enabled)

    def _hide_error(self) -> None:
        self._notice.hide()
        self._notice_label.clear()

    def _style_notice(self) -> None:
        light, dark = LEVEL_COLOURS["error"]
        colour = dark if self._dark else light
        self._notice.setStyleSheet(
            f"QFrame#errorNotice {{ border: 1px solid {colour}; border-radius: 6px; }}"
            f"QLabel#errorNoticeLabel {{ color: {colour}; }}"
        )

    # ----- actions from blocks -----

    def copy_text(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.copied.emit(text)

    def request_edit(self, message_id: int, text: str) -> None:
        self.editRequested.emit(message_id, text)

    def request_regenerate(self, message_id: int, settings: object) -> None:
        self.regenerateRequested.emit(message_id, settings)

    def request_sibling(self, message_id: int, delta: int) -> None:
        self.siblingRequested.emit(message_id, delta)

    def request_delete(self, message_id: int) -> None:
        self.deleteRequested.emit(message_id)

    def request_token_data(self, message_id: int) -> None:
        self.tokenDataRequested.emit(message_id)

    def request_branch(self, message_id: int, index: int, token_id: int) -> None:
        self.branchRequested.emit(message_id, index, token_id)

    def request_explore_step(self, message_id: int, index: int) -> None:
        self.exploreStepRequested.emit(message_id, index)

    # ----- context -----

    def mark_unseen(self, message_ids: Sequence[int]) -> None:
        """Mark these messages as left out of the latest reply's prompt (the overflow
        policy dropped them to fit the context window); unmark all others."""
        self._unseen = set(message_ids)
        for message_id, block in self._blocks.items():
            block.set_unseen(message_id in self._unseen)

    def request_compare(self, message_id: int) -> None:
        self.compareRequested.emit(message_id)

    # ----- tokens -----

    @property
    def tokens_default(self) -> bool:
        """True when replies open drawn as their tokens."""
        return self._tokens_default

    def set_tokens_default(self, on: bool) -> None:
        """Draw every reply as its tokens (on) or as Markdown (off), now and when built."""
        self._tokens_default = on
        for block in list(self._blocks.values()):
            if block.message.is_reply:
                block.set_tokens_mode(on)

    def set_token_data(
        self,
        message_id: int,
        records: Sequence[TokenRecord] | None,
        changes: Sequence[tuple[int, SamplingSettings]] = (),
        note: str = "",
    ) -> None:
        """A reply's token data (None: it has none, and `note` says why)."""
        block = self._blocks.get(message_id)
        if block is not None:
            block.set_token_data(records, changes, note)

    def append_token_records(self, message_id: int, records: Sequence[TokenRecord]) -> None:
        """Tokens of the reply being written (shown if its tokens view is open)."""
        block = self._blocks.get(message_id)
        if block is not None:
            block.append_token_records(records)

    # ----- scrolling -----

    def _follow(self) -> None:
        self._following = True
        self._jump.hide()
        self._scroll_to_bottom()

    def _scroll_to_bottom(self) -> None:
        bar = self._scroll.verticalScrollBar()
        self._set_scroll(bar.maximum())

    @Slot()
    def _follow_growth(self) -> None:
        """Scroll to the bottom after the column grew, moving its pixels, not repainting them.

        Qt moves the painted column only if nothing in it waits to be repainted; a streaming
        reply always has something waiting (its last lines, its status under them). So this
        runs once the layouts have settled (a zero timer after the range changed), paints
        what waits, then scrolls: each new line costs a strip instead of the whole view.
        """
        if not self._following:
            return
        bar = self._scroll.verticalScrollBar()
        if bar.maximum() > bar.value():
            QCoreApplication.sendPostedEvents(self.window(), QEvent.Type.UpdateRequest)
        self._set_scroll(bar.maximum())

    def _set_scroll(self, value: int) -> None:
        self._scrolling = True
        try:
            self._scroll.verticalScrollBar().setValue(value)
        finally:
            self._scrolling = False

    @Slot(int, int)
    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._following:
            self._follow_timer.start()
        elif self._anchor_from_bottom is not None:
            self._set_scroll(maximum - self._anchor_from_bottom)
        self._schedule_load_check()

    @Slot(int)
    def _on_value_changed(self, value: int) -> None:
        if self._scrolling:
            return
        bar = self._scroll.verticalScrollBar()
        self._anchor_from_bottom = None
        self._following = value >= bar.maximum() - FOLLOW_SLACK_PX
        self._jump.setVisible(not self._following)
        if not self._following:
            self._place_jump_button()
            self._jump.raise_()
        self._schedule_load_check()

    def _schedule_load_check(self) -> None:
        if self._first_built > 0 and not self._load_timer.isActive():
            self._load_timer.start()

    @Slot()
    def _load_earlier_if_near_top(self) -> None:
        bar = self._scroll.verticalScrollBar()
        if self._first_built > 0 and bar.value() <= LOAD_EARLIER_MARGIN_PX:
            self.load_earlier()

    def _place_jump_button(self) -> None:
        hint = self._jump.sizeHint()
        bar_width = self._scroll.verticalScrollBar().width()
        x = (self.width() - bar_width - hint.width()) // 2
        self._jump.setGeometry(x, self.height() - hint.height() - 12, hint.width(), hint.height())

    # ----- Qt events -----

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_jump_button()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            dark = is_dark(self.palette())
            if dark != self._dark:
                self._dark = dark
                self._style_notice()
                for block in self._blocks.values():
                    block.set_dark(dark)
