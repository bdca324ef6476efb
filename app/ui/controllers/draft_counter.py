"""The draft counter: the composer's token count and context meter, counted off the GUI
thread by the `TokenCounter` worker."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Slot

from app.core.chats.conversation import to_engine_messages
from app.core.inference.messages import Message
from app.core.inference.prompt import reply_budget
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_estimate import MESSAGE_OVERHEAD, estimate_tokens
from app.ui.chat.composer import Composer, describe_dropped
from app.ui.controllers.state import ChatState, RemoteInUse
from app.workers.token_counter import TokenCounter

log = logging.getLogger(__name__)


class DraftCounter(QObject):
    """Asks the counter thread for the draft's tokens and the prompt it would make, and
    shows the answers in the composer (only the answer to the latest request)."""

    def __init__(
        self,
        state: ChatState,
        counter: TokenCounter,
        composer: Composer,
        settings: Callable[[], SamplingSettings],
        system_prompt: Callable[[], str],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._state = state
        self._counter = counter
        self._composer = composer
        self._settings = settings
        self._system_prompt = system_prompt
        self._ids = itertools.count(1)
        self._last_id = 0
        self._draft = ""
        self._messages: tuple[Message, ...] = ()
        counter.draftTokens.connect(self._on_draft_tokens)
        counter.counted.connect(self._on_counted)
        counter.unavailable.connect(self._on_unavailable)
        composer.draftChanged.connect(self.request)

    @Slot(object)
    def set_model(self, model: object) -> None:
        """Count with this model's vocabulary from now on (a `LoadedModel`)."""
        if self._state.shut_down or self._state.model is None:
            return
        self._counter.set_model(str(self._state.model.info.path))
        self.request()

    @Slot()
    def request(self) -> None:
        """Count the draft and the prompt it would make, on the counter's thread."""
        if self._state.shut_down:
            return
        model = self._state.model
        if self._state.remote is not None:
            self._estimate(self._state.remote)
            return
        if model is None:
            self._composer.set_draft_tokens(None)
            self._composer.set_context_usage(0, 0)
            return
        self._draft = self._composer.text()
        path = [m for m in self._state.path if m.status != "streaming"]
        messages = to_engine_messages(path, self._system_prompt())
        request_id = next(self._ids)
        self._last_id = request_id
        self._messages = messages
        self._counter.count(
            request_id, self._draft, messages, self._settings().max_tokens, model.n_ctx
        )

    def _estimate(self, remote: RemoteInUse) -> None:
        """A server's model: counted here from the text's length (no local vocabulary)."""
        self._last_id = next(self._ids)  # answers to earlier requests are stale now
        draft = self._composer.text()
        path = [m for m in self._state.path if m.status != "streaming"]
        messages = list(to_engine_messages(path, self._system_prompt()))
        if draft.strip():
            messages.append(Message("user", draft))
        why = (
            f"Estimated from the text's length: {remote.connection} has no tokenizer endpoint "
            "(/tokenize)."
            if not remote.capabilities.exact_token_counts
            else f"Estimated here from the text's length; {remote.connection} counts exactly "
            "with its /tokenize when the message is sent."
        )
        self._composer.set_draft_pieces(())
        self._composer.set_draft_tokens(estimate_tokens(draft), why)
        prompt = sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)
        limit = remote.n_ctx
        used = prompt + reply_budget(self._settings().max_tokens, limit)
        self._composer.set_context_usage(used, limit, f"Estimated: {why}")

    @Slot(int, object)
    def _on_draft_tokens(self, request_id: int, pieces: object) -> None:
        if request_id == self._last_id and not self._state.shut_down:
            self._composer.set_draft_pieces(pieces if isinstance(pieces, tuple) else ())

    @Slot(int, int, int, int, object)
    def _on_counted(
        self, request_id: int, draft_tokens: int, prompt_tokens: int, limit: int, dropped: object
    ) -> None:
        if request_id != self._last_id or self._state.shut_down:
            return
        self._composer.set_draft_tokens(draft_tokens)
        messages = list(self._messages)
        if self._draft.strip():
            messages.append(Message("user", self._draft))
        indices = tuple(dropped) if isinstance(dropped, tuple | list) else None
        note = describe_dropped(indices, messages)
        used = prompt_tokens + reply_budget(self._settings().max_tokens, limit)
        self._composer.set_context_usage(used, limit, note)

    @Slot(int, str)
    def _on_unavailable(self, request_id: int, reason: str) -> None:
        if request_id == self._last_id and not self._state.shut_down:
            log.debug("no token count: %s", reason)
            self._composer.set_draft_tokens(None)
