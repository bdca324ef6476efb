"""The main window: a shell that lays out conversations | chat | model and settings, builds
the menus and status bar, and composes the controllers (app/ui/controllers/: models,
conversations, replies, draft counter, chat files). They share a `ChatState` and never call
each other: this window connects their signals. Closing the window cancels replies, stops
the worker thread in order and saves partial replies before the store closes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QSplitter, QStackedWidget, QVBoxLayout, QWidget

from app.core.chats.conversation import Conversation
from app.core.chats.store import Store
from app.core.inference.gpu_fallback import Placement
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.inference.load_probe import probe_cache_dir
from app.core.machine.load_verdicts import LoadVerdicts
from app.core.paths import AppPaths
from app.ui.chat.chat_view import ChatView
from app.ui.chat.composer import Composer
from app.ui.controllers.chat_files import ChatFiles
from app.ui.controllers.compare import CompareController
from app.ui.controllers.conversations import ConversationController
from app.ui.controllers.draft_counter import DraftCounter
from app.ui.controllers.explorer import ExplorerController
from app.ui.controllers.models import ModelController
from app.ui.controllers.remote import RemoteController
from app.ui.controllers.replies import ReplyController
from app.ui.controllers.server import ServerController
from app.ui.controllers.state import ChatState
from app.ui.controllers.storage import StorageController
from app.ui.controllers.template_fallback import TemplateFallback
from app.ui.conversations.conversation_list import ConversationList
from app.ui.menus import build_menus
from app.ui.notice_bar import NoticeBar
from app.ui.notices import notice_bridge
from app.ui.sampling.side_column import SideColumn
from app.ui.status_bar import StatusWidgets, process_memory
from app.ui.welcome_panel import WelcomePanel
from app.ui.widgets import named
from app.ui.window_access import WindowAccess
from app.ui.window_layout import Panels, WindowLayout
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots
from app.workers.token_counter import TokenCounter

if TYPE_CHECKING:
    pass

__all__ = ["MainWindow", "process_memory"]

log = logging.getLogger(__name__)

WINDOW_TITLE = "Hearth"
SHUTDOWN_TIMEOUT_MS = 1500


class MainWindow(WindowAccess, QMainWindow):
    """Hearth's window: conversation list | chat | model and sampling, with menus and status.

    Object names: mainSplitter, conversationList (see there), chatColumn, chatStack,
    welcomePanel, chatView, composer (see those), samplingPanel, noticeBar (see there), the
    status bar's parts (see `StatusWidgets`); actions newChatAction, openModelAction,
    importAction, exportChatAction, exportAllAction, storageAction, repairDatabaseAction,
    quitAction, toggleSidebarAction,
    toggleSettingsAction, searchAction, modelManagerAction, loadOptionsAction,
    aboutMachineAction, stopAction; dialogs loadOptionsDialog, machineReportDialog and
    modelManager (see there).

    Signals:
        modelLoaded(object): A `LoadedModel` is ready.
        modelLoadEnded(): A load ended without a model (failed or cancelled).
        replyStarted(int, int): Request id and reply message id of a new reply.
        replyFinished(int, object): Request id and the finished `StoredMessage` (or None if
            it was deleted meanwhile).
        replyFailed(int, str): Request id and the reason a reply could not be made.
        conversationOpened(object): The `Conversation` now on show, or None (a new chat).
    """

    modelLoaded = Signal(object)
    modelLoadEnded = Signal()
    replyStarted = Signal(int, int)
    replyFinished = Signal(int, object)
    replyFailed = Signal(int, str)
    conversationOpened = Signal(object)

    def __init__(
        self,
        paths: AppPaths,
        *,
        load_options: LoadOptions | None = None,
        inference: InferenceThread | None = None,
        token_counter: TokenCounter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(WINDOW_TITLE)
        self.resize(1200, 760)
        self._paths = paths
        self._layout = WindowLayout(paths.config)
        self._state = ChatState()
        self._store = Store.open(paths)
        self.interrupted_at_start = self._store.mark_interrupted_replies()
        self._stopped_cleanly = True
        options_store = LoadOptionsStore(paths.config)

        self._build_widgets()
        self._inference = inference or InferenceThread(
            model_settings=options_store,
            verdicts=LoadVerdicts(probe_cache_dir(paths.cache)),
        )
        self._snapshots = KVSnapshots(self._inference, self)
        self._counter = token_counter or TokenCounter()
        self._models = ModelController(
            self._state, paths, self._inference, options_store, load_options, self
        )
        self._conversations = ConversationController(
            self._state, self._store, self._sidebar, self._chat, self._panel, self._snapshots, self
        )
        self._replies = ReplyController(
            self._state,
            self._store,
            self._inference,
            self._snapshots,
            self._chat,
            self._panel.settings,
            self._conversations.ensure_conversation,
            self,
        )
        self._draft = DraftCounter(
            self._state,
            self._counter,
            self._composer,
            self._panel.settings,
            self._conversations.system_prompt,
            self,
        )
        self._files = ChatFiles(self._state, self._store, self)
        self._explorer = ExplorerController(
            self._state,
            self._store,
            self._inference,
            self._counter,
            self._side,
            self._composer,
            self._panel.settings,
            self._conversations.system_prompt,
            self,
        )
        self._compare = CompareController(
            self._state, self._store, self._inference, self._snapshots, self._chat, self._panel
        )
        self._remote = RemoteController(
            self._state, paths.config, self._inference, self._panel, self._side.explorer, self
        )
        self._storage = StorageController(self._state, self._store, self._snapshots, self)
        self._template = TemplateFallback(self._inference, self)
        self._menus = build_menus(
            self, self, self._models, self._files, self._remote, self._storage
        )
        self._status = StatusWidgets(self.statusBar())
        self._server = ServerController(self._state, self._inference, self._menus, self._status)
        self._connect()
        self._inference.start()
        self._counter.start()

        self._conversations.refresh_presets()
        panels = self._layout.restore(self, self._splitter)
        self.set_sidebar_visible(panels.sidebar)
        self.set_panel_visible(panels.panel)
        self.set_tokens_view(panels.tokens)
        self._conversations.open_most_recent(self.interrupted_at_start)
        self._update_controls()

    # ----- construction -----

    def _build_widgets(self) -> None:
        self._sidebar = ConversationList(self._store)
        self._notices = NoticeBar()
        self._welcome = WelcomePanel(self._paths.models)
        self._chat = ChatView()
        self._stack = QStackedWidget()
        self._stack.setObjectName("chatStack")
        self._stack.addWidget(self._chat)
        self._stack.addWidget(self._welcome)
        self._composer = Composer()

        chat_column = QWidget()
        named(chat_column, "chatColumn", "Chat")
        column = QVBoxLayout(chat_column)
        column.setContentsMargins(0, 6, 0, 6)
        column.setSpacing(6)
        column.addWidget(self._notices)
        column.addWidget(self._stack, 1)
        column.addWidget(self._composer)

        self._side = SideColumn()
        self._panel = self._side.sampling
        self._splitter = QSplitter(Qt.Orientation.Horizontal)
        self._splitter.setObjectName("mainSplitter")
        self._splitter.setChildrenCollapsible(False)
        self._splitter.addWidget(self._sidebar)
        self._splitter.addWidget(chat_column)
        self._splitter.addWidget(self._side)
        for index, stretch in enumerate((0, 1, 0)):
            self._splitter.setStretchFactor(index, stretch)
        self._splitter.setSizes([220, 560, 420])
        self.setCentralWidget(self._splitter)

    def _connect(self) -> None:
        """Wire widgets and controllers: every link between two concerns is here."""
        models, chats, replies = self._models, self._conversations, self._replies
        remote = self._remote
        storage, template = self._storage, self._template
        for controller in (models, chats, replies, self._server, remote, storage, template):
            controller.notice.connect(self.show_notice)
            controller.status.connect(self._show_status)
        self._files.status.connect(self._show_status)
        self._files.failed.connect(self.show_notice)
        self._files.skipped.connect(self.show_notice)
        self._files.imported.connect(self._on_imported)
        self._files.savePending.connect(replies.flush)
        self._files.savePending.connect(chats.save_settings)
        self._storage.repairStarting.connect(replies.flush)
        self._storage.repairStarting.connect(chats.save_settings)
        self._storage.repaired.connect(chats.reopen)
        self._sidebar.errorOccurred.connect(self.show_notice)
        notice_bridge().notice.connect(self.show_notice)
        self._sidebar.newChatRequested.connect(self._composer.focus_input)
        self._notices.openModelRequested.connect(models.open_model_dialog)
        self._notices.plainTranscriptRequested.connect(self._template.use_plain_transcript)
        self._template.offer.connect(self._notices.offer_plain_transcript)
        self._welcome.loadStarterRequested.connect(models.load_starter)
        self._welcome.openModelRequested.connect(models.open_model_dialog)
        self._welcome.browseModelsRequested.connect(models.open_model_manager)
        self._welcome.getStarterRequested.connect(models.fetch_starter)
        self._chat.copied.connect(self._on_copied)
        self._composer.sendRequested.connect(self.send_message)
        self._composer.stopRequested.connect(self.stop_reply)
        self._panel.collapseRequested.connect(self._hide_panel)
        self._panel.loadOptionsRequested.connect(models.open_load_options)
        self._status.cancelLoadRequested.connect(models.cancel_load)

        models.loadStarting.connect(replies.stop)
        models.loadStarting.connect(self._server.pause_for_load)
        models.loadStarting.connect(self._compare.stop)
        models.loadingShown.connect(self._status.show_loading)
        models.loadProgress.connect(self._status.set_progress)
        models.loadingHidden.connect(self._status.hide_loading)
        models.modelChanged.connect(self._show_model)
        models.noticeCleared.connect(self.clear_notice)
        models.controlsChanged.connect(self._update_controls)
        models.starterFetching.connect(self._welcome.show_fetching)
        models.starterFetchFailed.connect(self._welcome.show_fetch_failed)
        models.starterFetched.connect(self._welcome.refresh)
        models.modelLoaded.connect(self._draft.set_model)
        models.modelLoaded.connect(self.modelLoaded)
        models.modelLoadEnded.connect(self.modelLoadEnded)
        models.loadStarting.connect(remote.forget)
        models.remoteRequested.connect(remote.use_model)
        remote.remoteInUse.connect(models.forget_local)
        for slot in (self._show_model, self._update_controls, self._draft.request):
            remote.changed.connect(slot)
        remote.changed.connect(self._explorer.refresh)

        chats.leaving.connect(replies.cancel_active)
        chats.settingsChanged.connect(replies.steer)
        chats.settingsChanged.connect(self._explorer.set_settings)
        chats.countNeeded.connect(self._explorer.refresh)
        self._composer.draftChanged.connect(self._explorer.refresh)
        self._chat.exploreStepRequested.connect(self._explorer.explore_step)
        self._compare.exploreRequested.connect(self._explorer.explore_messages)
        self._compare.reloadNeeded.connect(chats.reload)
        chats.titleChanged.connect(self._show_title)
        chats.countNeeded.connect(self._draft.request)
        chats.controlsChanged.connect(self._update_controls)
        chats.conversationOpened.connect(self.conversationOpened)

        replies.reloadNeeded.connect(chats.reload)
        replies.changed.connect(self._on_replies_changed)
        replies.replyStarted.connect(self.replyStarted)
        replies.replyFinished.connect(self.replyFinished)
        replies.replyFailed.connect(self.replyFailed)

    # ----- notices and status -----

    @Slot(str)
    @Slot(str, bool)
    def show_notice(self, text: str, offer_open: bool = False) -> None:
        """Show a message above the chat (errors, hints), optionally with Open model…."""
        self._notices.show_notice(text, offer_open)

    def show_missing_model(self, reason: str) -> None:
        """Explain that there is no model to chat with and how to get one."""
        self.show_notice(
            f"{reason}\n\nOr open a .gguf file you already have with File → Open model… (Ctrl+O).",
            True,
        )
        self._update_controls()

    @Slot()
    def clear_notice(self) -> None:
        """Hide the notice bar."""
        self._notices.clear()

    @property
    def notice_text(self) -> str:
        """The notice on show ("" when none)."""
        return self._notices.text

    def is_streaming(self) -> bool:
        """Whether a reply is being written (in the chat or the compare dialog)."""
        return self._replies.in_flight > 0 or self._compare.running

    @Slot(str, int)
    def _show_status(self, text: str, timeout_ms: int) -> None:
        if text:
            self.statusBar().showMessage(text, timeout_ms)
        else:
            self.statusBar().clearMessage()

    @Slot(str)
    def _on_copied(self, _text: str) -> None:
        self.statusBar().showMessage("Copied to the clipboard.", 2000)

    @Slot(str)
    def _show_title(self, title: str) -> None:
        self.setWindowTitle(f"{title} — {WINDOW_TITLE}" if title else WINDOW_TITLE)

    @Slot()
    def _show_model(self) -> None:
        remote, model = self._state.remote, self._state.model
        if remote is not None and model is None:
            self._status.show_remote(remote.title, f"remote · {remote.kind}", remote.base_url)
            return
        placement = self._state.placement or (Placement.of(model) if model else None)
        self._panel.set_model(model, placement.text if placement else None)
        self._status.show_model(model, placement, self._models.placement_note)

    # ----- what the menus, the composer and tests call -----

    def load_model(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Start loading a model; the window stays responsive and shows progress."""
        self._models.load_model(path, options)

    @Slot()
    def new_chat(self) -> None:
        """Show an empty chat; it is saved when its first message is sent."""
        self._conversations.new_chat()
        self._composer.focus_input()

    def open_conversation(self, conversation_id: int) -> None:
        """Show a conversation (the reply streaming in another one is cancelled)."""
        self._conversations.open_conversation(conversation_id)

    @Slot()
    def focus_search(self) -> None:
        """Show the conversation list and put the keyboard in its search box."""
        self.set_sidebar_visible(True)
        self._sidebar.focus_search()

    def focus_composer(self) -> None:
        """Put the keyboard focus in the composer (on the welcome panel: its first button)."""
        if self._stack.currentWidget() is self._welcome:
            self._welcome.focus_first()
        else:
            self._composer.focus_input()

    @Slot(str)
    def send_message(self, text: str) -> None:
        """Send `text` as the next user message and start the reply (if one can start)."""
        if not text.strip():
            return
        if not self._state.can_send():
            if self._state.model is None and not self._state.loads_pending:
                self.statusBar().showMessage("Open a model first (File → Open model…).", 5000)
            return
        self._composer.take_text()
        self._conversations.flush_settings()
        if not self._replies.send(text):
            self._composer.set_text(text)  # nothing typed is lost

    @Slot()
    def stop_reply(self) -> None:
        """Stop the reply being streamed (its text so far is kept, marked cancelled)."""
        self._replies.stop()

    def regenerate(self, reply_id: int, settings: object = None) -> None:
        """A new version of a reply, with the current settings or the ones given."""
        self._replies.regenerate(reply_id, settings)

    def import_chats(self, path: Path) -> None:
        """Add the chats of a Hearth JSON file (on a background job; opens the first)."""
        self._files.import_chats(path)

    @Slot(object)
    def _on_imported(self, conversations: object) -> None:
        self._sidebar.refresh()
        imported: tuple[Conversation, ...] = conversations  # type: ignore[assignment]
        if imported:
            self.open_conversation(imported[0].id)

    @Slot()
    def _on_replies_changed(self) -> None:
        self._sidebar.refresh()
        self._update_controls()
        self._draft.request()

    @Slot()
    def _update_controls(self) -> None:
        state = self._state
        busy = state.active is not None
        self._composer.set_busy(busy)
        self._composer.set_send_enabled(state.can_send(ignore_busy=True))
        self._menus.stop.setEnabled(busy)
        show_welcome = not state.has_model and not state.loads_pending and not state.path
        self._welcome.refresh()
        self._stack.setCurrentWidget(self._welcome if show_welcome else self._chat)
        self._composer.setVisible(not show_welcome)
        self._menus.export_chat.setEnabled(state.conversation is not None)
        can_set_options = state.model_path is not None and not state.shut_down
        self._menus.load_options.setEnabled(can_set_options)
        self._panel.set_load_options_enabled(can_set_options)

    # ----- panels and layout -----

    @Slot(bool)
    def set_sidebar_visible(self, visible: bool) -> None:
        self._sidebar.setVisible(visible)
        self._menus.toggle_sidebar.setChecked(visible)

    @Slot(bool)
    def set_panel_visible(self, visible: bool) -> None:
        self._side.setVisible(visible)
        self._menus.toggle_panel.setChecked(visible)

    @Slot(bool)
    def set_tokens_view(self, on: bool) -> None:
        """Draw replies as their tokens (on) or as Markdown (off)."""
        self._chat.set_tokens_default(on)
        self._menus.tokens.setChecked(on)

    @Slot()
    def _hide_panel(self) -> None:
        self.set_panel_visible(False)
        self._composer.focus_input()

    # ----- shutdown -----

    def shutdown(self) -> bool:
        """Cancel replies, stop the worker threads in order, save partial replies, close the
        store. Idempotent; returns False if the inference thread did not stop in time."""
        if self._state.shut_down:
            return self._stopped_cleanly
        self._conversations.stop()
        self._state.shut_down = True
        self._status.stop()
        self._server.stop()

        self._compare.shutdown()
        self._stopped_cleanly = self._replies.shutdown(self._stop_inference)
        self._counter.stop()
        self._models.shutdown(SHUTDOWN_TIMEOUT_MS)
        self._remote.shutdown(SHUTDOWN_TIMEOUT_MS)
        self._explorer.shutdown()
        self._files.wait(SHUTDOWN_TIMEOUT_MS)
        self._storage.wait(SHUTDOWN_TIMEOUT_MS)
        self._sidebar.wait_for_jobs(SHUTDOWN_TIMEOUT_MS)
        try:
            panels = Panels(
                self._sidebar.isVisibleTo(self),
                self._side.isVisibleTo(self),
                self._chat.tokens_default,
            )
            self._layout.save(self, self._splitter, panels)
        except Exception:  # a layout that cannot be saved must not block closing
            log.exception("could not save the window layout")
        self._store.close()
        return self._stopped_cleanly

    def _stop_inference(self) -> bool:
        self._snapshots.release()
        return self._inference.stop(SHUTDOWN_TIMEOUT_MS)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
