"""The sampling explorer and the context view: what the model would write next, under the
current samplers, and what it reads.

The explorer asks the inference worker for one logits row (the next token after the chat
and the draft, or a step of a reply picked in the tokens view) and re-applies the sampler
chain to it on every slider move without new inference. The context view asks the counter
thread to split the prompt into its parts as the person types, and the worker for the
tokens its KV cache holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Slot

from app.core.chats.conversation import to_engine_messages
from app.core.chats.store import Store
from app.core.errors import HearthError
from app.core.inference.messages import Message
from app.core.inference.next_logits import NextLogits
from app.core.inference.sampling import SamplingSettings
from app.ui.chat.composer import Composer
from app.ui.controllers.state import ChatState
from app.ui.sampling.side_column import SideColumn
from app.workers.inference_thread import InferenceThread
from app.workers.token_counter import TokenCounter

log = logging.getLogger(__name__)


class ExplorerController(QObject):
    """Feeds the explorer panel and the context view from the worker and the counter."""

    def __init__(
        self,
        state: ChatState,
        store: Store,
        inference: InferenceThread,
        counter: TokenCounter,
        side: SideColumn,
        composer: Composer,
        settings: Callable[[], SamplingSettings],
        system_prompt: Callable[[], str],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._state = state
        self._store = store
        self._inference = inference
        self._counter = counter
        self._explorer = explorer = side.explorer
        self._context = side.context
        side.tabs.currentChanged.connect(self._on_tab_changed)
        self._composer = composer
        self._settings = settings
        self._system_prompt = system_prompt
        self._explore_id = 0
        self._where: str | None = None
        self._describe_id = 0
        self._describe_ids = iter(range(1, 2**62))
        explorer.exploreRequested.connect(self.explore_next)
        worker = inference.worker
        worker.explored.connect(self._on_explored)
        worker.exploreFailed.connect(self._on_explore_failed)
        worker.cacheReported.connect(self._on_cache)
        worker.loaded.connect(self._on_loaded)
        worker.unloaded.connect(self._on_unloaded)
        counter.described.connect(self._on_described)
        counter.describeFailed.connect(self._on_describe_failed)

    def _history(self, with_draft: bool) -> tuple[Message, ...]:
        path = [m for m in self._state.path if m.status != "streaming"]
        messages = to_engine_messages(path, self._system_prompt())
        draft = self._composer.text()
        if with_draft and draft.strip():
            messages = (*messages, Message("user", draft))
        return messages

    @Slot()
    def explore_next(self) -> None:
        """Compute the distribution of the next token: after the chat, or after the draft
        as the person's next message."""
        if not self._state.has_model:
            self._explorer.set_message("Load a model to explore its next token.")
            return
        messages = self._history(with_draft=True)
        if not messages or messages[-1].role != "user":
            self._explorer.set_message(
                "Write a message first: the explorer shows the reply's first token."
            )
            return
        self._request(messages, ())

    @Slot(int, int)
    def explore_step(self, reply_id: int, index: int) -> None:
        """The distribution the model had at token `index` of a reply (its earlier tokens
        read from the KV cache where it still holds them)."""
        try:
            reply = self._store.message(reply_id)
            data = self._store.token_data(reply_id)
        except HearthError as exc:
            self._explorer.set_message(exc.message)
            return
        if data is None or not 0 <= index < len(data.records):
            self._explorer.set_message("This reply has no token data to explore.")
            return
        path = [m for m in self._state.path if m.status != "streaming"]
        position = next((i for i, m in enumerate(path) if m.id == reply.id), None)
        before = path[:position] if position is not None else path
        messages = to_engine_messages(before, self._system_prompt())
        self._request(messages, tuple(r.token_id for r in data.records[:index]))

    @Slot(object, object, str)
    def explore_messages(self, messages: object, continue_with: object, where: str) -> None:
        """The distribution after explicit engine `messages` and reply tokens (a compared
        reply that is not in the chat); `where` names the position for the person."""
        if not isinstance(messages, tuple) or not isinstance(continue_with, tuple):
            return
        if not self._state.has_model:
            self._explorer.set_message("Load a model to explore its next token.")
            return
        self._request(messages, continue_with, where)

    def _request(
        self, messages: tuple[Message, ...], continue_with: tuple[int, ...], where: str = ""
    ) -> None:
        if self._explore_id:
            self._inference.cancel(self._explore_id)
        self._where = where or None
        self._explore_id = self._state.next_request_id()
        self._explorer.set_message("Reading the prompt…")
        self._inference.explore(self._explore_id, messages, continue_with)

    @Slot(int, object)
    def _on_explored(self, request_id: int, result: object) -> None:
        if request_id != self._explore_id or not isinstance(result, NextLogits):
            return
        self._explore_id = 0
        self._explorer.set_settings(self._settings())
        where = self._where
        if where is not None:
            where += f" (position {result.position:,}; {result.cached:,} tokens from the cache)"
        self._explorer.set_next_logits(result, where)
        self._inference.report_cache()

    @Slot(int, str)
    def _on_explore_failed(self, request_id: int, message: str) -> None:
        if request_id == self._explore_id:
            self._explore_id = 0
            self._explorer.set_message(message)

    @Slot(object)
    def set_settings(self, settings: object) -> None:
        """The samplers changed: redraw with no new inference."""
        if isinstance(settings, SamplingSettings):
            self._explorer.set_settings(settings)

    @Slot()
    def refresh(self) -> None:
        """The chat or the draft changed: split the prompt again and ask for the cache."""
        model = self._state.model
        self._explorer.set_settings(self._settings())
        if model is None or self._state.shut_down:  # (a server's model: no local vocabulary)
            self._context.set_parts(None)
            return
        if not self._context.isVisible():
            return  # split the prompt only for a person looking at it (per keystroke)
        self._describe_id = next(self._describe_ids)
        self._counter.describe(
            self._describe_id,
            self._history(with_draft=True),
            self._settings().max_tokens,
            model.n_ctx,
        )
        self._inference.report_cache()

    @Slot(int)
    def _on_tab_changed(self, _index: int) -> None:
        self.refresh()  # the context view shows what changed while it was hidden

    @Slot(int, object)
    def _on_described(self, request_id: int, parts: object) -> None:
        if request_id == self._describe_id:
            self._context.set_parts(parts)  # type: ignore[arg-type]

    @Slot(int, str)
    def _on_describe_failed(self, request_id: int, message: str) -> None:
        if request_id == self._describe_id:
            log.debug("no prompt parts: %s", message)
            self._context.set_parts(None)

    @Slot(object)
    def _on_cache(self, tokens: object) -> None:
        self._context.set_cached(tokens if isinstance(tokens, tuple) else ())

    @Slot(object)
    def _on_loaded(self, model: object) -> None:
        self._context.set_model(model)  # type: ignore[arg-type]
        self._explorer.set_row(None)
        self.refresh()

    @Slot()
    def _on_unloaded(self) -> None:
        self._context.set_model(None)
        self._explorer.set_row(None)

    def shutdown(self) -> None:
        """Wait for a redraw in progress (before the window closes)."""
        self._explorer.shutdown()
