"""Replies: send, stop, regenerate, edit, versions and deletes, the worker's events, and
saving streamed text as it arrives.

Data flow of one turn: the composer's text becomes a user message in the `Store`, then an
empty "streaming" reply; the branch on show goes to the inference worker as engine messages
with a `SettingsHolder` (the sampling panel replaces its settings while the reply streams).
Both are appended to the view and to `state.shown` in memory: nothing is read back or
rebuilt. Streamed text goes to the `ChatView` and to a `ReplyWriter`, which saves it at
least once a second (a timer flushes what arrived before a pause), so killing the app loses
at most about a second of text. The worker's last event finishes the reply in the store
with its stats, seed and the settings in force at its end.

A full disk (or a read-only folder) drops nothing: a reply that cannot be saved stays on
screen and in memory, the person is told once, and the flush timer saves it when space
returns (finished replies included).

Each reply carries a request id; events of ids no longer tracked are ignored. A reply left
behind (another chat opened, the branch changed) is cancelled by a direct call and finished
as "cancelled" when its last event arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer, Signal, Slot

from app.core.chats.conversation import (
    Conversation,
    MessageTree,
    StoredMessage,
    engine_messages_with_ids,
    reply_end,
)
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import ConversationSnapshot, Store
from app.core.errors import HearthError
from app.core.inference.events import GenerationDone, PrefillStarted
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TokenRecord
from app.ui.chat.chat_view import ChatView
from app.ui.controllers.state import ActiveReply, ChatState
from app.workers.inference_thread import InferenceThread
from app.workers.kv_snapshots import KVSnapshots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Branch:
    """The start of a reply decided before generation: the tokens kept from a reply and the
    rival chosen at the branch point, their text, and the stats that label the version."""

    records: tuple[TokenRecord, ...]
    text: str
    stats: dict[str, object]


SAVE_INTERVAL_S = 1.0
"""A streaming reply (text and token data) is saved once a second while tokens arrive."""
FLUSH_TIMER_MS = 1000
"""...and by this timer, so text that arrived before a pause is saved too."""
_PREFILL_STATUS_MIN_TOKENS = 256
KEPT = "The reply is kept on screen and saved when space returns."
SAVED_LATE = "The reply kept in memory while it could not be saved is saved now."

FinalSave = Callable[[], StoredMessage | None]
"""Saves a reply's final state (its `ReplyWriter.finish…` call), retried until it works."""


def _no_probabilities(stats: Mapping[str, Any], records: Sequence[TokenRecord]) -> str:
    """Why a server's reply has no token probabilities to show ("" when it has them)."""
    if stats.get("backend") != "remote" or not records or any(r.top for r in records):
        return ""
    return (
        f"Token probabilities are not available from this server ({stats.get('connection')}): "
        "it sent this reply without logprobs."
    )


class ReplyController(QObject):
    """Starts replies on the inference worker, streams them into the view and the store.

    `ensure_conversation(text)` gives the chat a first message goes to (creating it); the
    window passes the conversations controller's method.

    Signals:
        replyStarted(int, int): Request id and reply message id of a new reply.
        replyFinished(int, object): Request id and the finished `StoredMessage` (or None if
            it was deleted meanwhile).
        replyFailed(int, str): Request id and the reason a reply could not be made.
        notice(str, bool): Text for the notice bar (and whether to offer "Open model…").
        status(str, int): A passing status-bar message and its timeout in ms ("" clears).
        changed(): Replies or the tree on show changed: refresh the sidebar, controls and
            the token count.
        reloadNeeded(): The tree on show changed in the store (a version, a delete).
    """

    replyStarted = Signal(int, int)
    replyFinished = Signal(int, object)
    replyFailed = Signal(int, str)
    notice = Signal(str, bool)
    status = Signal(str, int)
    changed = Signal()
    reloadNeeded = Signal()

    def __init__(
        self,
        state: ChatState,
        store: Store,
        inference: InferenceThread,
        snapshots: KVSnapshots,
        chat: ChatView,
        settings: Callable[[], SamplingSettings],
        ensure_conversation: Callable[[str], Conversation],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._state = state
        self._store = store
        self._inference = inference
        self._snapshots = snapshots
        self._chat = chat
        self._settings = settings
        self._ensure_conversation = ensure_conversation
        self._replies: dict[int, ActiveReply] = {}
        self._unsaved: dict[int, tuple[ActiveReply, FinalSave]] = {}
        self._flush_timer = QTimer(self)
        self._flush_timer.setObjectName("replyFlushTimer")
        self._flush_timer.setInterval(FLUSH_TIMER_MS)
        self._flush_timer.timeout.connect(self.flush)
        worker = inference.worker
        worker.prefillStarted.connect(self._on_prefill_started)
        worker.prefillProgress.connect(self._on_prefill_progress)
        worker.tokens.connect(self._on_tokens)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        chat.editRequested.connect(self.edit_message)
        chat.regenerateRequested.connect(self.regenerate)
        chat.siblingRequested.connect(self.show_sibling)
        chat.deleteRequested.connect(self.delete_message)
        chat.tokenDataRequested.connect(self.show_token_data)
        chat.branchRequested.connect(self.branch)

    @property
    def in_flight(self) -> int:
        """Replies the worker has not finished yet (cancelled ones included)."""
        return len(self._replies)

    # ----- starting -----

    def send(self, text: str) -> bool:
        """Save `text` as the next user message of the chat on show and start its reply.

        Returns False (nothing saved; the caller keeps the text) when the store failed.
        """
        try:
            conversation = self._ensure_conversation(text)
            user = self._store.add_user_message(conversation.id, text)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return False
        shown = self._state.shown
        if shown is not None and shown.conversation.id == conversation.id:
            tree = MessageTree((*shown.tree.messages, user))
            self._state.shown = ConversationSnapshot(conversation, tree, (*shown.path, user))
            self._chat.append_message(user, tree)
        self._start_reply(user.id)
        return True

    def _start_reply(
        self,
        parent_id: int,
        settings: SamplingSettings | None = None,
        branch: Branch | None = None,
    ) -> None:
        """Create a streaming reply to `parent_id` and ask the worker for it (`branch`:
        starting with tokens already chosen)."""
        conversation = self._state.conversation
        if conversation is None:
            return
        settings = settings if settings is not None else self._settings()
        try:
            reply = self._store.start_reply(
                parent_id, model=self._state.model_name(), settings=settings, seed=settings.seed
            )
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        shown = self._state.shown
        appended = shown is not None and bool(shown.path) and shown.path[-1].id == parent_id
        if shown is not None and appended:
            tree = MessageTree((*shown.tree.messages, reply))
            path: tuple[StoredMessage, ...] = (*shown.path, reply)
        else:  # a new version or an edit: the branch on show changes, read it
            try:
                fresh = self._store.snapshot(conversation.id)
            except HearthError as exc:
                self.notice.emit(exc.message, False)
                return
            tree, path = fresh.tree, fresh.path
        self._state.shown = ConversationSnapshot(conversation, tree, path)
        messages, engine_ids = engine_messages_with_ids(path[:-1], conversation.system_prompt)
        request_id = self._state.next_request_id()
        record = ActiveReply(
            request_id=request_id,
            conversation_id=conversation.id,
            message=reply,
            writer=ReplyWriter(self._store, reply.id, interval=SAVE_INTERVAL_S),
            holder=SettingsHolder(settings),
            placement=self._state.reply_stats(),
            engine_ids=engine_ids,
        )
        if branch is not None:
            record.placement.update(branch.stats)
        self._replies[request_id] = record
        self._state.active = record
        if appended:
            self._chat.begin_reply(reply)
            self._chat.append_message(reply, tree)  # counts the versions from the new tree
        else:
            self._chat.set_conversation(path, tree)
            self._chat.begin_reply(reply)
        forced: tuple[int, ...] = ()
        if branch is not None:
            forced = tuple(r.token_id for r in branch.records)
            record.writer.start_with(branch.text, branch.records)
            self._chat.append_reply_text(reply.id, branch.text)
            self._chat.append_token_records(reply.id, branch.records)
        self._flush_timer.start()
        self._snapshots.claim(conversation.id)
        self._inference.generate(request_id, messages, record.holder, continue_with=forced)
        self.changed.emit()
        self.replyStarted.emit(request_id, reply.id)

    @Slot(int, object)
    def regenerate(self, reply_id: int, settings: object = None) -> None:
        """A new version of a reply, with the current settings or the ones given."""
        if self._state.active is not None or not self._state.can_send(ignore_busy=True):
            return
        try:
            reply = self._store.message(reply_id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
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
        if self._state.active is not None or not self._state.can_send(ignore_busy=True):
            return
        if not text.strip():
            return
        try:
            edited = self._store.edit_user_message(message_id, text)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self._start_reply(edited.id)

    @Slot(int, int, int)
    def branch(self, reply_id: int, index: int, token_id: int) -> None:
        """A new version of a reply: its tokens up to `index`, then `token_id` there, then
        whatever the model writes next with the current settings."""
        if self._state.active is not None or not self._state.can_send(ignore_busy=True):
            return
        try:
            reply = self._store.message(reply_id)
            data = self._store.token_data(reply_id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        if reply.parent_id is None or data is None or not 0 <= index < len(data.records):
            self.notice.emit("This reply has no token data to branch from.", False)
            return
        chosen = data.records[index]
        rival = next((alt for alt in chosen.top if alt.token_id == token_id), None)
        if rival is None or rival.token_id < 0:
            return
        forced = TokenRecord(rival.token_id, rival.piece, rival.logprob, chosen.top)
        records = (*data.records[:index], forced)
        text = b"".join(r.piece for r in records).decode("utf-8", errors="replace")
        stats = {"branched_at": index + 1, "branched_from": chosen.text, "branched_to": rival.text}
        self._start_reply(reply.parent_id, None, Branch(records, text, stats))

    @Slot(int)
    def show_token_data(self, message_id: int) -> None:
        """Give the chat view a reply's token data (from the writer while it streams)."""
        for record in self._replies.values():
            if record.message.id == message_id:
                records = list(record.writer.records)
                note = _no_probabilities(record.placement, records)
                self._chat.set_token_data(message_id, None if note else records, note=note)
                return
        try:
            data = self._store.token_data(message_id)
        except HearthError as exc:
            self._chat.set_token_data(message_id, None, note=exc.message)
            return
        if data is None:
            self._chat.set_token_data(
                message_id,
                None,
                note="This reply has no token data: it was made before Hearth kept it, or "
                "imported without it.",
            )
            return
        shown = self._state.shown
        stats = shown.tree.get(message_id).stats if shown and message_id in shown.tree else None
        note = _no_probabilities(stats or {}, data.records)
        if note:
            self._chat.set_token_data(message_id, None, note=note)
            return
        changes = [(change.index, change.settings) for change in data.changes]
        self._chat.set_token_data(message_id, data.records, changes)

    # ----- stopping -----

    @Slot()
    def stop(self) -> None:
        """Stop the reply being streamed (its text so far is kept, marked cancelled)."""
        active = self._state.active
        if active is not None:
            active.cancelled = True
            self._inference.cancel(active.request_id)

    @Slot(str)
    def cancel_active(self, why: str) -> None:
        """Cancel the reply streaming on show; it is finished when its last event comes."""
        active = self._state.active
        if active is None:
            return
        log.info("cancelling reply %d: %s", active.request_id, why)
        active.cancelled = True
        self._inference.cancel(active.request_id)
        active.writer.flush()
        self._state.active = None
        self.changed.emit()

    @Slot(object)
    def steer(self, settings: object) -> None:
        """New sampler settings for the reply streaming (from its next token on)."""
        active = self._state.active
        if active is not None and isinstance(settings, SamplingSettings):
            active.holder.set(settings)

    # ----- versions and deletes -----

    @Slot(int, int)
    def show_sibling(self, message_id: int, delta: int) -> None:
        """Show the previous (-1) or next (+1) version of a message."""
        shown = self._state.shown
        if shown is None or message_id not in shown.tree:
            return
        siblings = shown.tree.siblings(message_id)
        index = [m.id for m in siblings].index(message_id) + delta
        if not 0 <= index < len(siblings):
            return
        self.cancel_active("another version was shown")
        try:
            self._store.select_branch(siblings[index].id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self.reloadNeeded.emit()

    @Slot(int)
    def delete_message(self, message_id: int) -> None:
        """Delete a message and everything after it in its branch."""
        shown = self._state.shown
        if shown is None or message_id not in shown.tree:
            return
        active = self._state.active
        if active is not None and active.message.id in shown.tree.subtree_ids(message_id):
            self.cancel_active("its message was deleted")
        try:
            self._store.delete_message(message_id)
        except HearthError as exc:
            self.notice.emit(exc.message, False)
            return
        self.reloadNeeded.emit()

    # ----- the worker's events -----

    def _is_active(self, request_id: int) -> bool:
        active = self._state.active
        return active is not None and active.request_id == request_id

    @Slot(int, object)
    def _on_prefill_started(self, request_id: int, event: object) -> None:
        record = self._replies.get(request_id)
        if record is None or not isinstance(event, PrefillStarted):
            return
        unseen = [
            i
            for i in (record.engine_ids[d] for d in event.dropped if d < len(record.engine_ids))
            if i is not None
        ]
        if unseen:
            record.placement["unseen_message_ids"] = unseen
        if record is not self._state.active:
            return
        self._chat.mark_unseen(unseen)
        if unseen:
            self.status.emit(
                f"The chat is longer than the context: the {len(unseen)} oldest "
                "message(s) were left out of this reply's prompt.",
                10_000,
            )

    @Slot(int, int, int)
    def _on_prefill_progress(self, request_id: int, done: int, total: int) -> None:
        if self._is_active(request_id) and total >= _PREFILL_STATUS_MIN_TOKENS:
            self.status.emit(f"Reading the prompt: {done:,} of {total:,} tokens", 3000)

    def _save(
        self, record: ActiveReply, text: str, records: tuple[TokenRecord, ...] | None = None
    ) -> None:
        """Hand streamed text to the reply's writer. If the disk is full (or the folder
        read-only) the text stays in memory and on screen, and the next save tries again;
        the person is told once."""
        try:
            record.writer.append(text, records)
        except HearthError as exc:
            if not record.save_failed:
                record.save_failed = True
                self.notice.emit(f"{exc.message} {KEPT}", False)

    def _save_final(self, record: ActiveReply, save: FinalSave) -> StoredMessage | None:
        """Save a reply's end; if the store fails, keep it to retry (told once) and return
        None."""
        try:
            return save()
        except HearthError as exc:
            self._unsaved[record.message.id] = (record, save)
            self._flush_timer.start()
            if not record.save_failed:
                record.save_failed = True
                self.notice.emit(f"{exc.message} {KEPT}", False)
            return None

    @Slot(int, str, object)
    def _on_tokens(self, request_id: int, text: str, records: object) -> None:
        record = self._replies.get(request_id)
        if record is None or not isinstance(records, tuple) or not (text or records):
            return
        self._save(record, text, records or None)
        if record.writer.stale:
            self._inference.cancel(request_id)  # deleted meanwhile: stop making it
        if record is not self._state.active:
            return
        if records:
            self._chat.append_token_records(record.message.id, records)
        if text:
            self._chat.append_reply_text(record.message.id, text)

    @Slot(int, object)
    def _on_finished(self, request_id: int, done: object) -> None:
        record = self._replies.pop(request_id, None)
        if record is None or not isinstance(done, GenerationDone):
            return
        if done.note:  # why it ended early (a server's connection cut mid-reply)
            record.placement["note"] = done.note
        settings, writer = record.holder.get(), record.writer
        final = self._save_final(
            record,
            lambda: writer.finish_generation(done, settings=settings, extra_stats=record.placement),
        )
        if final is None and record.message.id in self._unsaved:  # shown from memory
            final = replace(
                record.message, content=writer.final_text(done), status=reply_end(done.stats)
            )
        self._reply_ended()
        if self._state.shut_down:
            return
        if final is not None and self._state.showing(record.conversation_id):
            if done.tail and record is self._state.active:
                self._chat.append_reply_text(record.message.id, done.tail)
            self._chat.finish_reply(final)
            self._replace_shown(final)
        if record is self._state.active:
            self._state.active = None
            self.status.emit(done.note, 15_000)
        self.changed.emit()
        self.replyFinished.emit(request_id, final)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        record = self._replies.pop(request_id, None)
        if record is None:
            return
        final = self._save_final(record, lambda: record.writer.finish("error"))
        self._reply_ended()
        if self._state.shut_down:
            return
        if self._state.showing(record.conversation_id):
            if final is not None:
                self._chat.finish_reply(final)
                self._replace_shown(final)
            self._chat.show_error(message)
        if record is self._state.active:
            self._state.active = None
            self.status.emit("", 0)
        self.changed.emit()
        self.replyFailed.emit(request_id, message)

    def _reply_ended(self) -> None:
        if not self._replies and not self._unsaved:
            self._flush_timer.stop()

    def _replace_shown(self, message: StoredMessage) -> None:
        """Put a finished reply into the tree on show, without reading the store."""
        shown = self._state.shown
        if shown is None or message.id not in shown.tree:
            return
        tree = MessageTree(message if m.id == message.id else m for m in shown.tree.messages)
        path = tuple(message if m.id == message.id else m for m in shown.path)
        self._state.shown = replace(shown, tree=tree, path=path)

    @Slot()
    def flush(self) -> None:
        """Save the text of every streaming reply now, and the ends of replies that could
        not be saved before."""
        for record in list(self._replies.values()):
            try:
                record.writer.flush()
            except HearthError as exc:
                log.warning("could not save reply %d: %s", record.message.id, exc)
        for message_id, (_record, save) in list(self._unsaved.items()):
            try:
                final = save()
            except HearthError:
                continue
            del self._unsaved[message_id]
            if final is not None:
                self._replace_shown(final)
            self.status.emit(SAVED_LATE, 5000)
            self.changed.emit()
        self._reply_ended()

    @property
    def unsaved(self) -> int:
        """Finished replies kept in memory because the store could not save them yet."""
        return len(self._unsaved)

    # ----- shutdown -----

    def shutdown(self, stop_worker: Callable[[], bool]) -> bool:
        """Cancel every reply, stop the worker (`stop_worker`), take its last events and
        save the partial replies. Returns what `stop_worker` did."""
        self._flush_timer.stop()
        self._state.active = None
        for request_id in self._replies:
            self._inference.cancel(request_id)
        stopped = stop_worker()
        # Deliver the last events the worker sent (its final text and stats) before saving.
        QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)
        for record in list(self._replies.values()):
            try:
                record.writer.finish("cancelled")
            except HearthError as exc:
                log.warning("could not save reply %d: %s", record.message.id, exc)
        self._replies.clear()
        for message_id, (_record, save) in self._unsaved.items():
            try:
                save()
            except HearthError as exc:
                log.warning("reply %d could not be saved before closing: %s", message_id, exc)
        self._unsaved.clear()
        return stopped
