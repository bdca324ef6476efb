"""Compare two settings on the same turn: two replies to one user message, A then B.

"Compare…" on a user message opens a `CompareDialog`. Its replies are made with
`InferenceThread.generate` (with token data) on the one model, both queued at once so they
run one after the other, and are held in memory only: the chat and the store do not change
until the person keeps one. Keeping writes it as a new version of the message's reply
(`Store.start_reply`, then `ReplyWriter.finish_generation` with its text, stats, seed,
settings and token data: the same record a regenerated reply leaves), and the chat shows it.

Why in memory rather than as versions deleted when not kept: a comparison is an
experiment, so nothing about it should show in the chat, move the branch on show, or be
left behind if Hearth stops mid-way; and keeping only one of two replies would otherwise
mean deleting the other. Closing the dialog (or the window) mid-generation cancels both
replies and saves nothing; replies kept before stay kept.

"Explore this step" asks the explorer for the distribution after the same messages and the
reply's tokens before that step (`exploreRequested`), so it works for replies that are not
in the chat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from app.core.chats.conversation import StoredMessage, reply_end, reply_summary
from app.core.chats.conversation import to_engine_messages as engine_messages
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import Store
from app.core.errors import HearthError
from app.core.inference.events import GenerationDone
from app.core.inference.messages import Message
from app.core.inference.sampling import PRESETS, SamplingSettings
from app.core.inference.token_data import TokenRecord
from app.ui.chat.chat_view import ChatView
from app.ui.controllers.state import ChatState
from app.ui.sampling.sampling_panel import SAMPLER_FIELDS, SamplingPanel
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots

if TYPE_CHECKING:  # the dialog loads when first opened
    from app.ui.chat.compare_dialog import CompareDialog

log = logging.getLogger(__name__)


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where two token-id lists differ (where one ends and the other goes
    on counts), or None when they are the same."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass
class _Run:
    """One side's reply, in memory until kept."""

    request_id: int
    settings: SamplingSettings
    records: list[TokenRecord] = field(default_factory=list)
    done: GenerationDone | None = None
    error: str = ""

    @property
    def ended(self) -> bool:
        return self.done is not None or bool(self.error)


@dataclass
class _Session:
    """The message compared and what its replies are made from."""

    conversation_id: int
    message: StoredMessage
    messages: tuple[Message, ...]
    model: str = ""
    placement: dict[str, Any] = field(default_factory=dict)
    runs: tuple[_Run, ...] = ()


class CompareController(QObject):
    """Runs the compare dialog: two replies to one user message, kept on request.

    It connects itself to the chat view's `compareRequested` and to the worker's reply
    signals (ignoring request ids that are not its own), and reads the current settings
    from the sampling panel. It is a child of `chat`.

    Signals:
        exploreRequested(object, object, str): Engine messages, the reply's token ids
            before the step, and a label for the position: show that step in the explorer.
        reloadNeeded(): A reply was kept as a version in the chat on show: read it again.
        compared(object): Both replies ended; the first token index where they differ
            (None: identical, or one failed).
    """

    exploreRequested = Signal(object, object, str)
    reloadNeeded = Signal()
    compared = Signal(object)

    def __init__(
        self,
        state: ChatState,
        store: Store,
        inference: InferenceThread,
        snapshots: KVSnapshots,
        chat: ChatView,
        panel: SamplingPanel,
    ) -> None:
        super().__init__(chat)
        self._state = state
        self._store = store
        self._inference = inference
        self._snapshots = snapshots
        self._chat = chat
        self._panel = panel
        self._dialog: CompareDialog | None = None
        self._session: _Session | None = None
        self._listening = False
        chat.compareRequested.connect(self.open_compare)
        worker = inference.worker
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)

    @property
    def dialog(self) -> CompareDialog | None:
        """The compare dialog on show, or None."""
        return self._dialog

    @property
    def request_ids(self) -> tuple[int, ...]:
        """The worker request ids of the replies compared now (A, B); () before a start."""
        return tuple(run.request_id for run in self._session.runs) if self._session else ()

    @property
    def running(self) -> bool:
        """True while a side's reply has not ended."""
        session = self._session
        return session is not None and any(not run.ended for run in session.runs)

    # ----- opening and closing -----

    @Slot(int)
    def open_compare(self, message_id: int) -> None:
        """Open the dialog for user message `message_id` of the branch on show."""
        conversation = self._state.conversation
        path = self._state.path
        position = next((i for i, m in enumerate(path) if m.id == message_id), None)
        if conversation is None or position is None or path[position].role != "user":
            return
        if self._dialog is not None:
            self._dialog.close()  # one comparison at a time: the old one is discarded
        message = path[position]
        session = _Session(
            conversation.id,
            message,
            engine_messages(path[: position + 1], conversation.system_prompt),
        )
        current = self._panel.settings()
        presets = {  # as the panel applies them: a built-in sets the samplers only
            name: current.with_changes(**{f: getattr(preset, f) for f in SAMPLER_FIELDS})
            for name, preset in PRESETS.items()
        }
        try:
            presets.update(self._store.presets())
        except HearthError as exc:
            log.warning("no saved presets for compare: %s", exc)
        from app.ui.chat.compare_dialog import CompareDialog

        dialog = CompareDialog(message.content, current, presets, self._chat.window())
        dialog.startRequested.connect(self._start)
        dialog.stopRequested.connect(self.stop)
        dialog.keepRequested.connect(self._keep)
        dialog.exploreRequested.connect(self._explore)
        dialog.finished.connect(self._on_closed)
        self._dialog, self._session = dialog, session
        # Streamed tokens reach this controller only while its dialog is open: each
        # receiver of the worker's `tokens` is one more event for the GUI thread per refresh.
        self._listen(True)
        dialog.show_error(self._blocked())
        dialog.show()

    def _blocked(self) -> str:
        """Why no comparison can start now ("" when one can)."""
        state = self._state
        if state.shut_down:
            return "Hearth is closing."
        if state.loads_pending:
            return "A model is loading: compare when it has loaded."
        if not state.has_model:
            return "Load a model to compare replies (File → Open model…)."
        if state.active is not None:
            return "A reply is being written in the chat: compare when it has finished."
        return ""

    @Slot(int)
    def _on_closed(self, _result: int) -> None:
        """The dialog closed: cancel what is running and forget the replies not kept."""
        dialog = self._dialog
        self.stop()
        self._listen(False)
        self._dialog = None
        self._session = None
        if dialog is not None:
            dialog.deleteLater()

    def _listen(self, on: bool) -> None:
        """Connect to the worker's streamed tokens (or disconnect), once."""
        if on != self._listening:
            tokens = self._inference.worker.tokens
            if on:
                tokens.connect(self._on_tokens)
            else:
                tokens.disconnect(self._on_tokens)
            self._listening = on

    @Slot()
    def stop(self) -> None:
        """Cancel both replies (they end with their events; nothing is saved)."""
        session = self._session
        if session is None:
            return
        for run in session.runs:
            if not run.ended:
                self._inference.cancel(run.request_id)

    def shutdown(self) -> None:
        """The window is closing: cancel the replies and close the dialog."""
        if self._dialog is not None:
            self._dialog.close()

    # ----- the replies -----

    @Slot(object, object)
    def _start(self, settings_a: object, settings_b: object) -> None:
        session, dialog = self._session, self._dialog
        if session is None or dialog is None or self.running:
            return
        blocked = self._blocked()
        if blocked:
            dialog.show_error(blocked)
            return
        assert isinstance(settings_a, SamplingSettings)
        assert isinstance(settings_b, SamplingSettings)
        session.model = self._state.model_name()
        session.placement = self._state.reply_stats()
        session.runs = tuple(
            _Run(self._state.next_request_id(), settings) for settings in (settings_a, settings_b)
        )
        dialog.begin()
        self._snapshots.claim(session.conversation_id)
        for run in session.runs:
            self._inference.generate(run.request_id, session.messages, run.settings)

    def _side(self, request_id: int) -> tuple[int, _Run] | None:
        session = self._session
        if session is None:
            return None
        for side, run in enumerate(session.runs):
            if run.request_id == request_id:
                return side, run
        return None

    @Slot(int, str, object)
    def _on_tokens(self, request_id: int, _text: str, records: object) -> None:
        found = self._side(request_id)
        if found is None or not isinstance(records, tuple) or not records or self._dialog is None:
            return
        side, run = found
        if not run.records:
            self._dialog.set_status(side, "Writing…")
        run.records.extend(records)
        self._dialog.append_records(side, records)

    @Slot(int, object)
    def _on_finished(self, request_id: int, done: object) -> None:
        found = self._side(request_id)
        if found is None or not isinstance(done, GenerationDone) or self._dialog is None:
            return
        side, run = found
        run.done = done
        session = self._session
        assert session is not None
        stopped = reply_end(done.stats) == "cancelled"
        status = "Stopped before the end" if stopped else "Done"
        self._dialog.finish_side(side, status, self._summary(session, run), bool(run.records))
        self._after_side()

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        found = self._side(request_id)
        if found is None or self._dialog is None:
            return
        side, run = found
        run.error = message
        self._dialog.finish_side(side, "Failed", "", False)
        self._dialog.show_error(message)
        self._after_side()

    def _after_side(self) -> None:
        session, dialog = self._session, self._dialog
        if session is None or dialog is None or self.running:
            return
        dialog.end()
        index = None
        if all(run.done is not None for run in session.runs):
            a, b = ([r.token_id for r in run.records] for run in session.runs)
            index = first_divergence(a, b)
            dialog.set_divergence(index)
        self.compared.emit(index)

    def _summary(self, session: _Session, run: _Run) -> str:
        """The reply's stats line, as the chat would show it once kept."""
        assert run.done is not None
        stats = {**run.done.stats.to_dict(), **session.placement}
        message = StoredMessage(
            id=0,
            conversation_id=session.conversation_id,
            parent_id=session.message.id,
            role="assistant",
            content=run.done.text,
            created_at=0.0,
            status=reply_end(run.done.stats),
            model=session.model,
            settings=run.settings,
            seed=run.done.stats.seed,
            stats=stats,
        )
        return reply_summary(message)

    # ----- keeping and exploring -----

    @Slot(int)
    def _keep(self, side: int) -> None:
        """Save side `side`'s reply as a new version of the message's reply."""
        session, dialog = self._session, self._dialog
        if session is None or dialog is None or not 0 <= side < len(session.runs):
            return
        run = session.runs[side]
        if run.done is None:
            return
        try:
            reply = self._store.start_reply(
                session.message.id,
                model=session.model,
                settings=run.settings,
                seed=run.settings.seed,
            )
        except HearthError as exc:
            dialog.show_error(exc.message)
            return
        writer = ReplyWriter(self._store, reply.id, interval=float("inf"))
        writer.append("", tuple(run.records))
        try:
            kept = writer.finish_generation(
                run.done, settings=run.settings, extra_stats=session.placement
            )
        except HearthError as exc:
            self._discard(reply.id)
            dialog.show_error(exc.message)
            return
        if kept is None:
            dialog.show_error("The message was deleted: the reply cannot be kept.")
            return
        dialog.set_kept(side, "Kept as a version")
        if self._state.showing(session.conversation_id):
            self.reloadNeeded.emit()

    def _discard(self, reply_id: int) -> None:
        """Remove a reply whose saving failed half-way (nothing is left half-saved)."""
        try:
            self._store.delete_message(reply_id)
        except HearthError as exc:
            log.warning("could not remove the unsaved compared reply %d: %s", reply_id, exc)

    @Slot(int, int)
    def _explore(self, side: int, index: int) -> None:
        session = self._session
        if session is None or not 0 <= side < len(session.runs):
            return
        run = session.runs[side]
        if not 0 <= index <= len(run.records):
            return
        tokens = tuple(r.token_id for r in run.records[:index])
        self.exploreRequested.emit(
            session.messages, tokens, f"Compare {_side_name(side)}, reply token {index + 1}"
        )


def _side_name(side: int) -> str:
    from app.ui.chat.compare_dialog import SIDES

    return SIDES[side]
