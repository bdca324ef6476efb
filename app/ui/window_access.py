"""The main window's read-only accessors (for tests and tools), kept apart from the shell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.chats.conversation import StoredMessage
from app.core.chats.store import Store
from app.core.inference.gpu_fallback import Placement
from app.core.inference.load_options import LoadedModel
from app.ui.chat.chat_view import ChatView
from app.ui.chat.composer import Composer
from app.ui.controllers.chat_files import ChatFiles
from app.ui.controllers.conversations import ConversationController
from app.ui.controllers.models import ModelController
from app.ui.controllers.remote import RemoteController
from app.ui.controllers.replies import ReplyController
from app.ui.controllers.state import ActiveReply, ChatState, RemoteInUse
from app.ui.conversations.conversation_list import ConversationList
from app.ui.sampling.sampling_panel import SamplingPanel
from app.ui.welcome_panel import WelcomePanel
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots
from app.workers.token_counter import TokenCounter

if TYPE_CHECKING:
    from app.ui.models.load_options_dialog import LoadOptionsDialog
    from app.ui.models.machine_dialog import MachineReportDialog
    from app.ui.models.model_manager import ModelManager


class WindowAccess:
    """Read-only views of the window's parts and state; `MainWindow` sets the attributes."""

    _state: ChatState
    _store: Store
    _inference: InferenceThread
    _snapshots: KVSnapshots
    _counter: TokenCounter
    _chat: ChatView
    _composer: Composer
    _sidebar: ConversationList
    _panel: SamplingPanel
    _welcome: WelcomePanel
    _models: ModelController
    _conversations: ConversationController
    _replies: ReplyController
    _files: ChatFiles
    _remote: RemoteController

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
        return self._state.model

    @property
    def placement(self) -> Placement | None:
        """Where the model in use runs (GPU layers, CPU threads), or None."""
        return self._state.placement if self._state.model is not None else None

    @property
    def load_options_dialog(self) -> LoadOptionsDialog | None:
        """The load options dialog on show, or None."""
        return self._models.load_options_dialog

    @property
    def machine_report_dialog(self) -> MachineReportDialog | None:
        """The "About this machine" dialog, once opened."""
        return self._models.machine_report_dialog

    @property
    def model_manager(self) -> ModelManager | None:
        """The model manager, once opened."""
        return self._models.manager

    @property
    def is_loading(self) -> bool:
        """True while a model load is in progress or queued."""
        return self._state.loads_pending > 0

    @property
    def current_conversation_id(self) -> int | None:
        """The chat on show (None: a new chat not yet saved)."""
        return self._state.conversation_id

    @property
    def current_path(self) -> tuple[StoredMessage, ...]:
        """The branch on show."""
        return self._state.path

    @property
    def active_request(self) -> int | None:
        """Request id of the reply streaming in the chat on show, or None."""
        return self._state.active.request_id if self._state.active is not None else None

    @property
    def active_reply(self) -> ActiveReply | None:
        """The reply streaming in the chat on show, or None."""
        return self._state.active

    @property
    def last_restored(self) -> tuple[int, int] | None:
        """The last KV cache restored: (conversation id, tokens)."""
        return self._conversations.last_restored

    @property
    def replies_in_flight(self) -> int:
        """Replies the worker has not finished yet (cancelled ones included)."""
        return self._replies.in_flight

    @property
    def models(self) -> ModelController:
        """Loading models, load options, the machine report, the model manager."""
        return self._models

    @property
    def conversations(self) -> ConversationController:
        """The chat on show, its settings and presets."""
        return self._conversations

    @property
    def replies(self) -> ReplyController:
        """Sending, stopping, regenerating, editing, versions."""
        return self._replies

    @property
    def chat_files(self) -> ChatFiles:
        """Import and export."""
        return self._files

    @property
    def remote(self) -> RemoteController:
        """Connections to servers, and a server's model in use."""
        return self._remote

    @property
    def remote_model(self) -> RemoteInUse | None:
        """The server's model replies come from, or None."""
        return self._state.remote
