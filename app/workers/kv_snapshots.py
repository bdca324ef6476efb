"""Keep each conversation's KV cache when the chat on show changes, and bring it back.

The engine holds one KV cache: the prompt of the last reply it made. Switching to another
chat and replying there overwrites it, so the next turn of the first chat would re-read its
whole history. `KVSnapshotKeeper` lives on the inference thread, beside the worker, so its
slots run between generations (never during one) and may touch the worker's engine:
`save` copies the cache of the chat being left, `restore` loads the snapshot of the chat
being opened. Snapshots stay in memory, least recently used first out, within a byte
budget sized from the machine's free RAM (`snapshot_budget`); a new model makes them all
useless, so loading one clears them. The space they use is reported (`usageChanged`) so
settings can show it, with a button that clears them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import HearthError
from app.core.inference.kv_snapshot import KVSnapshot, snapshot_budget
from app.workers.inference import InferenceWorker
from app.workers.inference_thread import InferenceThread

if TYPE_CHECKING:
    from app.core.host.engine_host import EngineHost

log = logging.getLogger(__name__)

DEFAULT_MAX_SNAPSHOTS = 16


class KVSnapshotKeeper(QObject):
    """Per-conversation KV snapshots, kept on the inference thread.

    Drive it through `KVSnapshots` (queued calls in the order the GUI makes them, behind
    any generation already queued). Ownership: `claim(conversation)` before a generation
    says whose history the cache will hold; `save(conversation)` only copies the cache if
    that conversation owns it, so a chat never gets another chat's cache.

    Signals:
        saved(int, int): Conversation id and the snapshot's size in bytes.
        restored(int, int): Conversation id and how many tokens the cache now holds for it
            (0: no snapshot, or one that did not fit this model).
        usageChanged(object, object): Bytes the snapshots take now, and the budget.
    """

    saved = Signal(int, int)
    restored = Signal(int, int)
    usageChanged = Signal(object, object)

    def __init__(
        self,
        worker: InferenceWorker,
        *,
        budget_bytes: int | None = None,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
    ) -> None:
        super().__init__()
        self._worker = worker
        self.budget_bytes = budget_bytes if budget_bytes is not None else snapshot_budget()
        self._max = max_snapshots
        self._used = 0
        self._snapshots: OrderedDict[int, KVSnapshot] = OrderedDict()
        self._owner: int | None = None
        self._home_thread = QThread.currentThread()
        worker.loaded.connect(self.clear)
        worker.unloaded.connect(self.clear)

    # ----- slots (run on the inference thread) -----

    @Slot(int)
    def claim(self, conversation_id: int) -> None:
        """The next generation reads this conversation: the cache will be its."""
        self._owner = conversation_id

    @Slot(int)
    def save(self, conversation_id: int) -> None:
        """Copy the cache for `conversation_id`, if the cache holds that conversation."""
        engine = self._engine()
        if engine is None or self._owner != conversation_id or not engine.cached_tokens:
            return
        try:
            snapshot = engine.save_snapshot()
        except HearthError as exc:
            log.info("no KV snapshot for conversation %d: %s", conversation_id, exc)
            return
        size = len(snapshot.state)
        self._snapshots.pop(conversation_id, None)
        if size > self.budget_bytes:
            log.info("KV snapshot of %d bytes exceeds the budget; not kept", size)
            return
        self._snapshots[conversation_id] = snapshot
        self._evict()
        self._report()
        self.saved.emit(conversation_id, size)

    @Slot(int)
    def restore(self, conversation_id: int) -> None:
        """Load the snapshot of `conversation_id` into the cache, if there is one."""
        engine = self._engine()
        if engine is None:
            return
        if self._owner == conversation_id:
            self.restored.emit(conversation_id, len(engine.cached_tokens))
            return
        snapshot = self._snapshots.get(conversation_id)
        if snapshot is None:
            self.restored.emit(conversation_id, 0)
            return
        self._snapshots.move_to_end(conversation_id)
        try:
            ok = engine.restore_snapshot(snapshot)
        except HearthError as exc:
            log.info("KV snapshot of conversation %d not restored: %s", conversation_id, exc)
            ok = False
        if ok:
            self._owner = conversation_id
        else:
            self._snapshots.pop(conversation_id, None)
            self._owner = None  # a failed restore leaves the cache empty
            self._report()
        self.restored.emit(conversation_id, len(snapshot.tokens) if ok else 0)

    @Slot(int)
    def forget(self, conversation_id: int) -> None:
        """Drop a conversation's snapshot (deleted, or its history rewritten)."""
        self._snapshots.pop(conversation_id, None)
        self._report()

    @Slot()
    @Slot(object)
    def clear(self, _model: object = None) -> None:
        """Drop every snapshot (a model was loaded or unloaded, or the person asked)."""
        self._snapshots.clear()
        self._owner = None
        self._report()

    @Slot()
    def release(self) -> None:
        """Drop the snapshots and move back to the thread that made this object."""
        self.clear()
        thread = QThread.currentThread()
        if thread is not self._home_thread:
            self.moveToThread(self._home_thread)

    # ----- helpers -----

    @property
    def used_bytes(self) -> int:
        """Bytes the snapshots take (read on its thread, or after `usageChanged`)."""
        return self._used

    @property
    def snapshot_ids(self) -> tuple[int, ...]:
        """Conversations with a snapshot, least recently used first (read on its thread)."""
        return tuple(self._snapshots)

    def _engine(self) -> EngineHost | None:
        # This object shares the worker's thread, so it runs between the worker's slots.
        engine = self._worker.engine
        if engine is None or engine.loaded is None:
            return None
        return engine

    def _evict(self) -> None:
        total = sum(len(s.state) for s in self._snapshots.values())
        while self._snapshots and (total > self.budget_bytes or len(self._snapshots) > self._max):
            _, dropped = self._snapshots.popitem(last=False)
            total -= len(dropped.state)

    def _report(self) -> None:
        used = sum(len(s.state) for s in self._snapshots.values())
        if used != self._used:
            self._used = used
            self.usageChanged.emit(used, self.budget_bytes)


class KVSnapshots(QObject):
    """The GUI's handle on a `KVSnapshotKeeper` living on an `InferenceThread`.

    Create it on the GUI thread before or after `inference.start()`; call `release()`
    before `inference.stop()`. Calls are queued behind the generations already sent.

    Signals:
        usageChanged(object, object): Bytes the snapshots take now, and the budget.
    """

    usageChanged = Signal(object, object)
    _claimRequested = Signal(int)
    _saveRequested = Signal(int)
    _restoreRequested = Signal(int)
    _forgetRequested = Signal(int)
    _clearRequested = Signal()
    _releaseRequested = Signal()

    def __init__(
        self,
        inference: InferenceThread,
        parent: QObject | None = None,
        *,
        budget_bytes: int | None = None,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
    ) -> None:
        super().__init__(parent)
        self._inference = inference
        self._used = 0
        self.keeper = KVSnapshotKeeper(
            inference.worker, budget_bytes=budget_bytes, max_snapshots=max_snapshots
        )
        self.keeper.moveToThread(inference.qthread)
        self._claimRequested.connect(self.keeper.claim)
        self._saveRequested.connect(self.keeper.save)
        self._restoreRequested.connect(self.keeper.restore)
        self._forgetRequested.connect(self.keeper.forget)
        self._clearRequested.connect(self.keeper.clear)
        self._releaseRequested.connect(self.keeper.release)
        self.budget_bytes = self.keeper.budget_bytes
        self.keeper.usageChanged.connect(self._on_usage)
        self._released = False

    @property
    def used_bytes(self) -> int:
        """Bytes the snapshots take, as last reported (for the settings page)."""
        return self._used

    def clear(self) -> None:
        """Drop every snapshot (the settings page's clear button)."""
        if not self._released:
            self._clearRequested.emit()

    @Slot(object, object)
    def _on_usage(self, used: object, budget: object) -> None:
        self._used = int(used)  # type: ignore[call-overload]
        self.usageChanged.emit(used, budget)

    def claim(self, conversation_id: int) -> None:
        """Call just before sending a generation for `conversation_id`."""
        if not self._released:
            self._claimRequested.emit(conversation_id)

    def save(self, conversation_id: int) -> None:
        """Keep the cache of the chat being left (when the cache is that chat's)."""
        if not self._released:
            self._saveRequested.emit(conversation_id)

    def restore(self, conversation_id: int) -> None:
        """Bring back the cache of the chat being opened (when there is a snapshot)."""
        if not self._released:
            self._restoreRequested.emit(conversation_id)

    def forget(self, conversation_id: int) -> None:
        """Drop a chat's snapshot."""
        if not self._released:
            self._forgetRequested.emit(conversation_id)

    def release(self) -> None:
        """Free the snapshots and hand the keeper back; queue it before stopping the thread."""
        if not self._released:
            self._released = True
            self._releaseRequested.emit()
