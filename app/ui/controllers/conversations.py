"""The chat on show: open, new, delete, search hits, its settings and presets, and the KV
cache kept for each chat while another is on show."""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.core.chats.conversation import (
    DEFAULT_TITLE,
    Conversation,
    MessageTree,
    title_from_text,
)
from app.core.chats.store import ConversationSnapshot, Store
from app.core.errors import HearthError
from app.core.inference.sampling import SamplingSettings
from app.ui.chat.chat_view import ChatView
from app.ui.controllers.state import ChatState
from app.ui.conversations.conversation_list import ConversationList
from app.ui.sampling.sampling_panel import SamplingPanel
from app.workers.kv_snapshots import KVSnapshots

log = logging.getLogger(__name__)

SETTINGS_SAVE_DELAY_MS = 300
"""A dragged slider is saved to the chat once it rests this long (the reply follows at once)."""


class ConversationController(QObject):
    """Owns `state.conversation` and `state.shown`: which chat is on show and its settings.

    Signals:
        leaving(str): The chat on show is about to change; the reply streaming in it must
            stop (the text says why).
        conversationOpened(object): The `Conversation` now on show, or None (a new chat).
        titleChanged(str): The title of the chat on show.
        settingsChanged(object): The panel's `SamplingSettings` changed (a reply streaming
            follows them at its next token).
        notice(str, bool): Text for the notice bar (and whether to offer "Open model…").
        status(str, int): A passing status-bar message and its timeout in ms.
        countNeeded(): The prompt changed: count it again.
        controlsChanged(): What can be done now changed.
    """

    leaving = Signal(str)
    conversationOpened = Signal(object)
    titleChanged = Signal(str)
    settingsChanged = Signal(object)
    notice = Signal(str, bool)
    status = Signal(str, int)
    countNeeded = Signal()
    controlsChanged = Signal()

    def __init__(
        self,
        state: ChatState,
        store: Store,
        sidebar: ConversationList,
        chat: ChatView,
        panel: SamplingPanel,
        snapshots: KVSnapshots,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._state = state
        self._store = store
        self._sidebar = sidebar
        self._chat = chat
        self._panel = panel
        self._snapshots = snapshots
        self._settings_dirty = False
        self.last_restored: tuple[int, int] | None = None
        snapshots.keeper.restored.connect(self._on_kv_restored)
        self._settings_timer = QTimer(self)
        self._settings_timer.setObjectName("settingsSaveTimer")
        self._settings_timer.setSingleShot(True)
        self._settings_timer.setInterval(SETTINGS_SAVE_DELAY_MS)
        self._settings_timer.timeout.connect(self.save_settings)
        sidebar.conversationSelected.connect(self.open_conversation)
        sidebar.newChatRequested.connect(self.new_chat)
        sidebar.searchHitActivated.connect(self.open_search_hit)
        sidebar.conversationDeleted.connect(self._on_conversation_deleted)
        panel.settingsChanged.connect(self._on_settings_changed)
        panel.systemPromptChanged.connect(self._on_system_prompt_changed)
        panel.presetSaveRequested.connect(self._on_preset_save)
        panel.presetDeleteRequested.connect(self._on_preset_delete)
        panel.makeDefaultRequested.connect(self._on_make_default)
        panel.useDefaultRequested.connect(self._on_use_default)

    # ----- opening -----

    def open_most_recent(self, interrupted: int = 0) -> None:
        """Open the chat changed last, or a new chat when there is none; say how many
        replies were `interrupted` when Hearth last closed."""
        if interrupted:
            self.status.emit(
                f"{interrupted} repl{'ies were' if interrupted != 1 else 'y was'} interrupted "
                "when Hearth last closed; the text written so far is kept.",
                15_000,
            )
        conversations = self._store.list_conversations()
        if conversations:
            recent = max(conversations, key=lambda c: (c.updated_at, c.id))
            self.open_conversation(recent.id)
        else:
            self.new_chat()

    @Slot()
    def new_chat(self) -> None:
        """Show an empty chat; it is saved when its first message is sent."""
        self._leave()
        state = self._state
        state.conversation = None
        state.shown = None
        state.pending_settings = None
        state.pending_prompt = None
        self._chat.set_conversation((), MessageTree(()))
        self._panel.set_settings(self._store.default_settings())
        self._panel.set_system_prompt(self._store.default_system_prompt())
        self._panel.set_follows_default(None)
        self._sidebar.select_conversation(None)
        self.titleChanged.emit("")
        self.controlsChanged.emit()
        self.countNeeded.emit()
        self.conversationOpened.emit(None)

    @Slot(int)
    def open_conversation(self, conversation_id: int) -> None:
        """Show a conversation (the reply streaming in another one is cancelled)."""
        if self._state.showing(conversation_id):
            self._sidebar.select_conversation(conversation_id)
            return
        try:
            shown = self._store.snapshot(conversation_id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self._leave()
        self.show(shown)
        conversation = shown.conversation
        self._panel.set_settings(self._store.conversation_settings(conversation.id))
        self._panel.set_system_prompt(conversation.system_prompt)
        self._panel.set_follows_default(conversation.settings is None)
        self._sidebar.select_conversation(conversation.id)
        self._snapshots.restore(conversation.id)
        self.controlsChanged.emit()
        self.countNeeded.emit()
        self.conversationOpened.emit(conversation)

    @Slot(int, int)
    def open_search_hit(self, conversation_id: int, message_id: int) -> None:
        """Open a conversation on the branch that holds a message found by search."""
        if self._state.showing(conversation_id):
            if any(m.id == message_id for m in self._state.path):
                return
            self.leaving.emit("the branch on show changed")
        try:
            self._store.select_branch(message_id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        if self._state.showing(conversation_id):
            self.reload()
        else:
            self.open_conversation(conversation_id)

    def show(self, shown: ConversationSnapshot) -> None:
        """Put a conversation on show (the whole branch; a streaming reply continues)."""
        self._state.conversation = shown.conversation
        self._state.shown = shown
        self._chat.set_conversation(shown.path, shown.tree)
        active = self._state.active
        if active is not None and any(m.id == active.message.id for m in shown.path):
            self._chat.begin_reply(replace(active.message, content=active.writer.text))
        self.titleChanged.emit(shown.conversation.title)

    @Slot()
    def reload(self) -> None:
        """Read the chat on show again after a change to its tree (a version, a delete)."""
        if self._state.conversation is None:
            return
        try:
            self.show(self._store.snapshot(self._state.conversation.id))
        except HearthError as exc:
            self.notice.emit(exc.message, False)
        self._sidebar.refresh()
        self.controlsChanged.emit()
        self.countNeeded.emit()

    @Slot()
    def reopen(self) -> None:
        """Read everything again after the database was replaced (a repair): the chat on
        show if it survived, else the most recent one."""
        current = self._state.conversation_id
        self._state.conversation = None
        self._state.shown = None
        self._sidebar.refresh()
        try:
            ids = {c.id for c in self._store.list_conversations()}
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        if current in ids and current is not None:
            self.open_conversation(current)
        else:
            self.open_most_recent()

    def _leave(self) -> None:
        """Before another chat goes on show: save what is pending, stop its reply, keep its
        KV cache."""
        self.flush_settings()
        self.leaving.emit("another chat was opened")
        if self._state.conversation is not None:
            self._snapshots.save(self._state.conversation.id)

    @Slot(int)
    def _on_conversation_deleted(self, conversation_id: int) -> None:
        self._snapshots.forget(conversation_id)
        if self._state.showing(conversation_id):
            self.leaving.emit("its chat was deleted")
            self._state.conversation = None
            self.new_chat()

    def ensure_conversation(self, first_text: str) -> Conversation:
        """The chat on show, created (titled after `first_text`) if it is a new chat.

        Raises:
            HearthError: The store could not save it.
        """
        state = self._state
        conversation = state.conversation
        if conversation is None:
            conversation = self._store.create_conversation(
                title_from_text(first_text),
                system_prompt=state.pending_prompt,
                settings=state.pending_settings,
            )
            state.conversation = conversation
            state.shown = ConversationSnapshot(conversation, MessageTree(()), ())
            state.pending_settings = None
            state.pending_prompt = None
            self._sidebar.select_conversation(conversation.id)
            self.titleChanged.emit(conversation.title)
            self._panel.set_follows_default(conversation.settings is None)
            self.conversationOpened.emit(conversation)
        elif conversation.title == DEFAULT_TITLE and not state.path:
            conversation = self._store.rename_conversation(
                conversation.id, title_from_text(first_text)
            )
            state.conversation = conversation
            self.titleChanged.emit(conversation.title)
        return conversation

    @Slot(int, int)
    def _on_kv_restored(self, conversation_id: int, tokens: int) -> None:
        self.last_restored = (conversation_id, tokens)
        if tokens:
            log.info("conversation %d: KV cache restored (%d tokens)", conversation_id, tokens)

    # ----- settings, system prompt and presets -----

    def flush_settings(self) -> None:
        """Save a slider change still waiting for its delay (before send, leave, close)."""
        self._panel.flush_pending()
        self.save_settings()

    @Slot(object)
    def _on_settings_changed(self, settings: object) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        self.settingsChanged.emit(settings)
        if self._state.conversation is None:
            self._state.pending_settings = settings
        else:
            self._settings_dirty = True
            self._settings_timer.start()
            self._panel.set_follows_default(False)
        self.countNeeded.emit()

    @Slot()
    def save_settings(self) -> None:
        """Save the panel's settings to the chat on show (when a change is pending)."""
        self._settings_timer.stop()
        conversation = self._state.conversation
        if not self._settings_dirty or conversation is None:
            return
        self._settings_dirty = False
        try:
            self._state.conversation = self._store.set_conversation_settings(
                conversation.id, self._panel.settings()
            )
        except HearthError as exc:
            self.notice.emit(exc.message, False)

    @Slot(str)
    def _on_system_prompt_changed(self, text: str) -> None:
        conversation = self._state.conversation
        if conversation is None:
            self._state.pending_prompt = text
        else:
            try:
                self._state.conversation = self._store.set_system_prompt(conversation.id, text)
            except HearthError as exc:
                self.notice.emit(exc.message, False)
        self.countNeeded.emit()

    def system_prompt(self) -> str:
        """The system prompt of the chat on show (or of the new chat)."""
        conversation = self._state.conversation
        if conversation is not None:
            return conversation.system_prompt
        return self._state.pending_prompt or self._panel.system_prompt()

    @Slot(str, object)
    def _on_preset_save(self, name: str, settings: object) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        try:
            self._store.save_preset(name, settings)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self.refresh_presets()
        self.status.emit(f"Saved the preset “{name}”.", 4000)

    @Slot(str)
    def _on_preset_delete(self, name: str) -> None:
        try:
            self._store.delete_preset(name)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
        self.refresh_presets()

    def refresh_presets(self) -> None:
        """Show the saved presets in the panel."""
        try:
            self._panel.set_user_presets(self._store.presets())
        except HearthError as exc:
            self.notice.emit(exc.message, False)

    @Slot(object, str)
    def _on_make_default(self, settings: object, system_prompt: str) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        try:
            self._store.set_default_settings(settings)
            self._store.set_default_system_prompt(system_prompt)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self.status.emit("New chats will start with these settings.", 4000)

    @Slot()
    def _on_use_default(self) -> None:
        self._settings_timer.stop()
        self._settings_dirty = False
        default = self._store.default_settings()
        conversation = self._state.conversation
        if conversation is not None:
            try:
                self._state.conversation = self._store.set_conversation_settings(
                    conversation.id, None
                )
            except HearthError as exc:
                self.notice.emit(exc.message, False)
                return
        else:
            self._state.pending_settings = None
        self._panel.set_settings(default)
        self._panel.set_follows_default(True if conversation is not None else None)
        self.settingsChanged.emit(default)
        self.countNeeded.emit()

    def stop(self) -> None:
        """Save pending settings and stop the timer (at shutdown)."""
        self.flush_settings()
        self._settings_timer.stop()
