"""The sidebar: every conversation (pinned first), new chat, rename, pin, delete with undo,
and full-text search across all chats.

`ConversationList` talks to the `Store` directly for what it owns (titles, pins, the bin,
search); the window listens to its signals for what changes the chat on show.
`ConversationListModel` and `SearchResultsModel` are plain list models, one row per
conversation or search hit.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import (
    QModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QKeyEvent,
    QKeySequence,
    QPalette,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chats.conversation import DEFAULT_TITLE
from app.core.chats.store import Store
from app.core.errors import HearthError
from app.ui.conversations.conversation_models import (
    ConversationIdRole,
    ConversationListModel,
    PinnedRole,
    SearchHitDelegate,
    SearchResultsModel,
)
from app.ui.widgets import flat_scroll_bar
from app.ui.widgets import named as _named
from app.workers.background import JobSet

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 150
"""Typing pauses this long before the search runs (search as you type, not per key)."""
UNDO_SECONDS = 15
"""How long the "Deleted … Undo" bar stays up."""


class _SearchField(QLineEdit):
    """The search box: Down moves into the results, Esc clears it.

    Signals:
        downPressed(): The Down arrow was pressed.
    """

    downPressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Down:
            self.downPressed.emit()
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            event.accept()
            return
        super().keyPressEvent(event)


class ConversationList(QWidget):
    """The conversation sidebar over a `Store`.

    Keys: Ctrl+N new chat and Ctrl+K search (window shortcuts the window wires to
    `newChatRequested` and `focus_search`); in the list F2 renames, Ctrl+Shift+P pins or
    unpins, Delete moves to the bin, and the context-menu key lists the same actions.

    Object names: conversationList, newChatButton, searchField, conversationView,
    searchResultsView, messageBar, messageBarLabel, undoDeleteButton, messageBarCloseButton;
    actions renameConversationAction, pinConversationAction, deleteConversationAction,
    undoDeleteAction.

    Signals:
        conversationSelected(int): The person picked a conversation (click, keys, or undo).
        newChatRequested(): The New chat button was pressed.
        searchHitActivated(int, int): Conversation id and message id of a search hit picked.
        conversationDeleted(int): A conversation went to the bin.
        conversationRestored(int): A deleted conversation came back (undo).
        purged(): Deleted conversations were erased from the database for good (after the
            undo window).
        errorOccurred(str): A store operation failed; the text is for a person.
    """

    conversationSelected = Signal(int)
    newChatRequested = Signal()
    searchHitActivated = Signal(int, int)
    conversationDeleted = Signal(int)
    conversationRestored = Signal(int)
    purged = Signal()
    errorOccurred = Signal(str)

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "conversationList", "Conversations")
        self._store = store
        self._current: int | None = None
        self._selecting = False
        self._undo_id: int | None = None

        self.model = ConversationListModel(self)
        self.model.titleEdited.connect(self._on_title_edited)
        self.results = SearchResultsModel(self)

        self._build()
        self._build_actions()
        self.refresh()

    # ----- construction -----

    def _build(self) -> None:
        self._new_button = QPushButton("New chat")
        _named(self._new_button, "newChatButton", "New chat")
        self._new_button.setToolTip("Start a new chat (Ctrl+N)")
        self._new_button.clicked.connect(self.newChatRequested)

        self._search = _SearchField()
        _named(self._search, "searchField", "Search all chats")
        self._search.setPlaceholderText("Search all chats (Ctrl+K)")
        self._search.setClearButtonEnabled(True)
        for button in self._search.findChildren(QToolButton):  # Qt's own clear button
            _named(button, "searchClearButton", "Clear the search")
        self._search.textChanged.connect(self._on_search_text)
        self._search.returnPressed.connect(self._activate_first_hit)
        self._search.downPressed.connect(self._focus_results)
        self._search_timer = QTimer(self)
        self._search_timer.setObjectName("searchTimer")
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.run_search)

        self.view = QListView()
        _named(self.view, "conversationView", "Conversation list")
        self.view.setModel(self.model)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.view.setUniformItemSizes(True)
        side = round(self.view.fontMetrics().height() * 0.8)
        self.view.setIconSize(QSize(side, side))
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        # Long titles are elided, never scrolled sideways.
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        flat_scroll_bar(self.view, "base")
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)

        self.results_view = QListView()
        _named(self.results_view, "searchResultsView", "Search results")
        self.results_view.setModel(self.results)
        self.results_view.setItemDelegate(SearchHitDelegate(self.results_view))
        self.results_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results_view.setWordWrap(True)
        self.results_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        flat_scroll_bar(self.results_view, "base")
        self.results_view.activated.connect(self._on_hit_activated)
        self.results_view.clicked.connect(self._on_hit_activated)

        self._no_results = QLabel("No messages match.")
        _named(self._no_results, "noResultsLabel", "No search results")
        self._no_results.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._no_results.setWordWrap(True)

        self._stack = QStackedWidget()
        self._stack.setObjectName("sidebarStack")
        self._stack.addWidget(self.view)
        self._stack.addWidget(self.results_view)
        self._stack.addWidget(self._no_results)

        self._bar_label = QLabel()
        _named(self._bar_label, "messageBarLabel", "Sidebar message")
        self._bar_label.setWordWrap(True)
        self._undo_button = QPushButton("Undo")
        _named(self._undo_button, "undoDeleteButton", "Undo delete")
        self._undo_button.clicked.connect(self.undo_delete)
        self._bar_close = QPushButton("Close")
        _named(self._bar_close, "messageBarCloseButton", "Dismiss message")
        self._bar_close.setFlat(True)
        self._bar_close.clicked.connect(self.hide_message_bar)
        self._bar = QFrame()
        _named(self._bar, "messageBar", "Sidebar message bar")
        self._bar.setFrameShape(QFrame.Shape.StyledPanel)
        self._bar.setAutoFillBackground(True)
        self._bar.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        bar_row = QHBoxLayout(self._bar)
        bar_row.setContentsMargins(6, 4, 4, 4)
        bar_row.addWidget(self._bar_label, 1)
        bar_row.addWidget(self._undo_button)
        bar_row.addWidget(self._bar_close)
        self._bar.hide()
        self._bar_timer = QTimer(self)
        self._bar_timer.setObjectName("messageBarTimer")
        self._bar_timer.setSingleShot(True)
        self._bar_timer.timeout.connect(self.hide_message_bar)
        self._purge_timer = QTimer(self)
        self._purge_timer.setObjectName("purgeTimer")
        self._purge_timer.setSingleShot(True)
        self._purge_timer.setInterval(UNDO_SECONDS * 1000)
        self._purge_timer.timeout.connect(self.purge_deleted)
        self._jobs = JobSet(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 0, 6)
        layout.addWidget(self._new_button)
        layout.addWidget(self._search)
        layout.addWidget(self._stack, 1)
        layout.addWidget(self._bar)
        self.setMinimumWidth(160)

    def _build_actions(self) -> None:
        def action(text: str, name: str, shortcut: QKeySequence | str) -> QAction:
            act = QAction(text, self.view)
            act.setObjectName(name)
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.view.addAction(act)
            return act

        self.rename_action = action("Rename…", "renameConversationAction", "F2")
        self.rename_action.triggered.connect(self.rename_current)
        self.pin_action = action("Pin", "pinConversationAction", "Ctrl+Shift+P")
        self.pin_action.triggered.connect(self.toggle_pin_current)
        self.delete_action = action(
            "Delete", "deleteConversationAction", QKeySequence(QKeySequence.StandardKey.Delete)
        )
        self.delete_action.triggered.connect(self.delete_current)
        self.undo_action = QAction("Undo delete", self)
        self.undo_action.setObjectName("undoDeleteAction")
        self.undo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Undo))
        self.undo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.undo_action.setEnabled(False)
        self.undo_action.triggered.connect(self.undo_delete)
        self.addAction(self.undo_action)
        self._update_actions()

    # ----- state -----

    @property
    def current_conversation_id(self) -> int | None:
        """The conversation marked as open in the list, or None."""
        return self._current

    @property
    def search_text(self) -> str:
        """What is in the search box."""
        return self._search.text()

    @property
    def message_bar_text(self) -> str:
        """The text of the message bar ("" when hidden)."""
        return self._bar_label.text() if not self._bar.isHidden() else ""

    # ----- list -----

    def refresh(self) -> None:
        """Re-read the conversations from the store, keeping the open one selected."""
        try:
            conversations = self._store.list_conversations()
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
            return
        self._selecting = True
        try:
            self.model.set_conversations(conversations)
            self._select_row(self._current)
        finally:
            self._selecting = False
        self._update_actions()

    def select_conversation(self, conversation_id: int | None) -> None:
        """Mark a conversation as the open one (no `conversationSelected`)."""
        self._current = conversation_id
        self._selecting = True
        try:
            self._select_row(conversation_id)
        finally:
            self._selecting = False
        self._update_actions()

    def _select_row(self, conversation_id: int | None) -> None:
        row = self.model.row_of(conversation_id) if conversation_id is not None else None
        selection = self.view.selectionModel()
        if row is None:
            selection.clearSelection()
            selection.setCurrentIndex(QModelIndex(), selection.SelectionFlag.NoUpdate)
            return
        index = self.model.index(row)
        selection.setCurrentIndex(index, selection.SelectionFlag.ClearAndSelect)
        self.view.scrollTo(index)

    @Slot(QModelIndex, QModelIndex)
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_actions()
        if self._selecting or not current.isValid():
            return
        conversation_id = int(current.data(ConversationIdRole))
        if conversation_id == self._current:
            return
        self._current = conversation_id
        self.conversationSelected.emit(conversation_id)

    def _current_row_id(self) -> int | None:
        index = self.view.currentIndex()
        return int(index.data(ConversationIdRole)) if index.isValid() else None

    def _update_actions(self) -> None:
        index = self.view.currentIndex()
        has = index.isValid()
        for act in (self.rename_action, self.pin_action, self.delete_action):
            act.setEnabled(has)
        pinned = bool(index.data(PinnedRole)) if has else False
        self.pin_action.setText("Unpin" if pinned else "Pin")

    # ----- rename, pin, delete -----

    @Slot()
    def rename_current(self) -> None:
        """Start editing the selected conversation's title in place."""
        index = self.view.currentIndex()
        if index.isValid():
            self.view.edit(index)

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        """Give a conversation a new title."""
        clean = " ".join(title.split())
        if not clean:
            return
        try:
            self._store.rename_conversation(conversation_id, clean)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
        self.refresh()

    @Slot(int, str)
    def _on_title_edited(self, conversation_id: int, title: str) -> None:
        try:
            self._store.rename_conversation(conversation_id, title)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
            QTimer.singleShot(0, self.refresh)

    @Slot()
    def toggle_pin_current(self) -> None:
        """Pin the selected conversation, or unpin it."""
        conversation_id = self._current_row_id()
        if conversation_id is not None:
            self.toggle_pin(conversation_id)

    def toggle_pin(self, conversation_id: int) -> None:
        """Pin a conversation to the top, or unpin it."""
        try:
            conversation = self._store.conversation(conversation_id)
            self._store.set_pinned(conversation_id, not conversation.pinned)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
        self.refresh()

    @Slot()
    def delete_current(self) -> None:
        """Move the selected conversation to the bin (undo from the message bar)."""
        conversation_id = self._current_row_id()
        if conversation_id is not None:
            self.delete_conversation(conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        """Move a conversation to the bin and offer Undo."""
        try:
            title = self._store.conversation(conversation_id).title
            self._store.delete_conversation(conversation_id)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
            return
        row = self.model.row_of(conversation_id)
        if conversation_id == self._current:
            self._current = None
        self.refresh()
        if self.model.rowCount() and row is not None and self.view.hasFocus():
            # keep the keyboard in the list: the next row becomes current (not opened)
            self._selecting = True
            try:
                self.view.setCurrentIndex(self.model.index(min(row, self.model.rowCount() - 1)))
            finally:
                self._selecting = False
        if self.search_text:
            self.run_search()
        self._undo_id = conversation_id
        self.undo_action.setEnabled(True)
        self._purge_timer.start()
        shown = title if title != DEFAULT_TITLE else "the new chat"
        self.show_message(f"Deleted “{shown}”.", undo=True)
        self.conversationDeleted.emit(conversation_id)

    @Slot()
    def undo_delete(self) -> None:
        """Bring back the conversation deleted last, and open it."""
        conversation_id = self._undo_id
        if conversation_id is None:
            return
        self._undo_id = None
        self._purge_timer.stop()
        self.undo_action.setEnabled(False)
        self.hide_message_bar()
        try:
            self._store.restore_conversation(conversation_id)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
            return
        self._current = conversation_id
        self.refresh()
        if self.search_text:
            self.run_search()
        self.conversationRestored.emit(conversation_id)
        self.conversationSelected.emit(conversation_id)

    @Slot()
    def purge_deleted(self) -> None:
        """The undo window is over: erase the deleted chats from the file for good (off the
        GUI thread; no trace of their text stays, see `Store.purge_deleted`)."""
        self._purge_timer.stop()
        self._undo_id = None
        self.undo_action.setEnabled(False)
        store = self._store
        job = self._jobs.start(store.purge_deleted, "hearth-purge")
        job.succeeded.connect(self._on_purged)
        job.failed.connect(self.errorOccurred)

    @Slot(object)
    def _on_purged(self, count: object) -> None:
        log.info("erased %s deleted conversation(s) for good", count)
        self.purged.emit()

    def wait_for_jobs(self, timeout_ms: int) -> bool:
        """Wait for a purge in progress (at shutdown)."""
        return self._jobs.wait(timeout_ms)

    # ----- message bar -----

    def show_message(self, text: str, *, undo: bool = False) -> None:
        """Show a short message under the list, with an Undo button if `undo`."""
        self._bar_label.setText(text)
        self._undo_button.setVisible(undo)
        self._bar.show()
        self._bar_timer.start(UNDO_SECONDS * 1000)

    @Slot()
    def hide_message_bar(self) -> None:
        """Hide the message bar (the deletion stays undoable with Ctrl+Z in the list)."""
        self._bar_timer.stop()
        self._bar.hide()

    # ----- search -----

    @Slot()
    def focus_search(self) -> None:
        """Put the keyboard in the search box, its text selected."""
        if not self.isVisible():
            self.show()
        self._search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._search.selectAll()

    def set_search_text(self, text: str) -> None:
        """Search for `text` now (as if typed and the pause elapsed)."""
        self._search.setText(text)
        self.run_search()

    @Slot(str)
    def _on_search_text(self, text: str) -> None:
        if text.strip():
            self._search_timer.start()
        else:
            self._search_timer.stop()
            self.results.set_hits(())
            self._stack.setCurrentWidget(self.view)

    @Slot()
    def run_search(self) -> None:
        """Run the search for the box's text and show the hits."""
        self._search_timer.stop()
        text = self._search.text()
        if not text.strip():
            self.results.set_hits(())
            self._stack.setCurrentWidget(self.view)
            return
        try:
            hits = self._store.search(text)
        except HearthError as exc:
            self.errorOccurred.emit(exc.message)
            hits = ()
        self.results.set_hits(hits)
        self._stack.setCurrentWidget(self.results_view if hits else self._no_results)
        if hits:
            self.results_view.setCurrentIndex(self.results.index(0))

    @Slot()
    def _focus_results(self) -> None:
        if self._search_timer.isActive():
            self.run_search()
        if self.results.rowCount():
            self.results_view.setFocus(Qt.FocusReason.OtherFocusReason)
        elif not self.search_text:
            self.view.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def _activate_first_hit(self) -> None:
        if self._search_timer.isActive():
            self.run_search()
        if self.results.rowCount():
            index = self.results_view.currentIndex()
            self._on_hit_activated(index if index.isValid() else self.results.index(0))

    @Slot(QModelIndex)
    def _on_hit_activated(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        hit = self.results.hit(index.row())
        self._current = hit.conversation_id
        self.select_conversation(hit.conversation_id)
        self.searchHitActivated.emit(hit.conversation_id, hit.message_id)
