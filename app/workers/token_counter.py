"""The live token counter: a model's vocabulary on its own thread, counting drafts.

The inference thread is busy while a reply streams, so counting there would wait behind
the generation. `TokenCounter` loads only the model's vocabulary (`VocabTokenizer`) on a
thread of its own and answers while the engine generates.

Only the newest request matters: the worker skips requests that a newer one has
overtaken before it starts them, and the GUI side drops answers to anything but the
newest request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from app.core.errors import HearthError
from app.core.inference.messages import Message
from app.workers.thread_host import ThreadWorker, WorkerHost

if TYPE_CHECKING:  # llama.cpp loads with the first vocabulary, after the window shows
    from app.core.inference.tokenizer import VocabTokenizer

log = logging.getLogger(__name__)


class _LatestRequest:
    """The id of the newest count request, shared by the GUI and the worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = -1

    def get(self) -> int:
        with self._lock:
            return self._value

    def set(self, value: int) -> None:
        with self._lock:
            self._value = value


class TokenCountWorker(ThreadWorker):
    """Owns a `VocabTokenizer` on the thread it was moved to and counts with it.

    Slots (call through queued signals, see `TokenCounter`): `set_model`, `count`,
    `shutdown`.

    Signals:
        modelReady(str): The vocabulary of this model path is loaded.
        modelFailed(str, str): A model path and why its vocabulary could not be loaded.
        draftTokens(int, object): Request id and the draft's tokens, a tuple of
            (token id, text) read as plain text; sent just before `counted`.
        counted(int, int, int, int, object): Request id, draft tokens, prompt tokens,
            context limit, dropped message indices (tuple) or None.
        unavailable(int, str): Request id and why it could not be counted.
        described(int, object): Request id and the `PromptParts` of `describe`.
        describeFailed(int, str): Request id and why `describe` could not answer.
    """

    modelReady = Signal(str)
    modelFailed = Signal(str, str)
    draftTokens = Signal(int, object)
    counted = Signal(int, int, int, int, object)
    unavailable = Signal(int, str)
    described = Signal(int, object)
    describeFailed = Signal(int, str)

    def __init__(
        self, latest: _LatestRequest | None = None, latest_describe: _LatestRequest | None = None
    ) -> None:
        super().__init__("hearth-token-counter")
        self._latest = latest or _LatestRequest()
        self._latest_describe = latest_describe or _LatestRequest()
        self._tokenizer: VocabTokenizer | None = None
        self.requests_counted = 0
        """How many requests were counted (not skipped as stale); for tests."""
        self.stop_rendering = threading.Event()
        """Set (from any thread) to stop a chat template rendering now: at shutdown."""

    @Slot(str)
    def set_model(self, path: str) -> None:
        """Load the vocabulary of the GGUF at `path` ("" forgets the current one)."""
        if self._closed:
            return
        self._close_tokenizer()
        if not path:
            return
        from app.core.inference.tokenizer import VocabTokenizer

        try:
            self._tokenizer = VocabTokenizer(path)
        except HearthError as exc:
            log.warning("cannot count tokens for %s: %s", path, exc)
            self.modelFailed.emit(path, exc.message)
        except Exception as exc:
            log.exception("unexpected error loading the vocabulary of %s", path)
            self.modelFailed.emit(path, f"Unexpected error: {type(exc).__name__}: {exc}")
        else:
            self.modelReady.emit(path)

    @Slot(int, str, object, object, int)
    def count(
        self, request_id: int, draft: str, messages: object, max_tokens: object, n_ctx: int
    ) -> None:
        """Count `draft` and the prompt it would make after `messages` (a `Message` tuple).

        Skipped when a newer request is already waiting.
        """
        if request_id < self._latest.get():
            return
        tokenizer = self._tokenizer
        if self._closed or tokenizer is None:
            self.unavailable.emit(request_id, "No model vocabulary is loaded.")
            return
        history = (
            tuple(m for m in messages if isinstance(m, Message))
            if isinstance(messages, Sequence)
            else ()
        )
        chat = (*history, Message("user", draft)) if draft.strip() else history
        limit = n_ctx if n_ctx > 0 else tokenizer.info.context_length
        budget = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        try:
            ids = tokenizer.tokenize(draft, parse_special=False)
            pieces = tuple((token, tokenizer.token_text(token)) for token in ids)
            result = tokenizer.count_prompt(chat, budget, limit, cancel=self.stop_rendering)
        except HearthError as exc:
            self.unavailable.emit(request_id, exc.message)
            return
        except Exception as exc:
            log.exception("unexpected error counting tokens")
            self.unavailable.emit(request_id, f"Unexpected error: {type(exc).__name__}: {exc}")
            return
        self.requests_counted += 1
        self.draftTokens.emit(request_id, pieces)
        self.counted.emit(request_id, len(ids), result.prompt_tokens, limit, result.dropped)

    @Slot(int, object, object, int)
    def describe(self, request_id: int, messages: object, max_tokens: object, n_ctx: int) -> None:
        """Split the prompt for `messages` into parts (`described`), or `describeFailed`.

        Skipped when a newer describe request is already waiting.
        """
        if request_id < self._latest_describe.get():
            return
        tokenizer = self._tokenizer
        if self._closed or tokenizer is None:
            self.describeFailed.emit(request_id, "No model vocabulary is loaded.")
            return
        chat = (
            tuple(m for m in messages if isinstance(m, Message))
            if isinstance(messages, Sequence)
            else ()
        )
        limit = n_ctx if n_ctx > 0 else tokenizer.info.context_length
        budget = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        try:
            parts = tokenizer.describe_prompt(chat, budget, limit, cancel=self.stop_rendering)
        except HearthError as exc:
            self.describeFailed.emit(request_id, exc.message)
            return
        except Exception as exc:
            log.exception("unexpected error describing the prompt")
            self.describeFailed.emit(request_id, f"Unexpected error: {type(exc).__name__}: {exc}")
            return
        self.described.emit(request_id, parts)

    def release(self) -> None:
        """Free the vocabulary (on this thread, from `shutdown`)."""
        self._close_tokenizer()

    def _close_tokenizer(self) -> None:
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None


class TokenCounter(WorkerHost):
    """Counts drafts with the loaded model's own tokenizer, on a thread of its own.

    Create it on the GUI thread, connect its signals, `start()` it, then `set_model()` and
    `count()` as the person types; `stop()` before the application exits. Requests made
    before `start()` or after `stop()` are ignored.

    Signals:
        draftTokens(int, object): For the newest request only: its id and the draft's
            tokens as (token id, text) pairs, read as plain text (typed markers such as
            "<|im_end|>" are ordinary text, never control tokens). Sent before `counted`.
        counted(int, int, int, int, object): For the newest request only: its id, the
            draft's tokens, the prompt's tokens (system prompt, history and draft as the
            chat template renders them), the context limit, and the indices (into
            `messages` + the draft) that the drop-oldest overflow policy would leave out:
            () when it fits, None when it cannot fit even then. The meter's "used" is
            prompt tokens + `app.core.inference.prompt.reply_budget(max_tokens, limit)`.
        unavailable(int, str): The newest request could not be counted (no model, a
            template that rejects the messages), and why.
        modelReady(str): A model's vocabulary is loaded (its path).
        modelFailed(str, str): A model path and why its vocabulary could not be loaded.
        described(int, object): For the newest request only: its id and the
            `PromptParts` of the prompt (`describe`): the exact tokens after the template,
            split into the system prompt, each message and template overhead.
        describeFailed(int, str): For the newest `describe` request: why it failed.
    """

    draftTokens = Signal(int, object)
    counted = Signal(int, int, int, int, object)
    unavailable = Signal(int, str)
    modelReady = Signal(str)
    modelFailed = Signal(str, str)
    described = Signal(int, object)
    describeFailed = Signal(int, str)

    _setModelRequested = Signal(str)
    _countRequested = Signal(int, str, object, object, int)
    _describeRequested = Signal(int, object, object, int)

    def __init__(self, parent: QObject | None = None) -> None:
        self._latest = _LatestRequest()
        self._latest_describe = _LatestRequest()
        worker = TokenCountWorker(self._latest, self._latest_describe)
        super().__init__(worker, parent)
        self.worker = worker
        self._setModelRequested.connect(worker.set_model)
        self._countRequested.connect(worker.count)
        self._describeRequested.connect(worker.describe)
        worker.described.connect(self._on_described)
        worker.describeFailed.connect(self._on_describe_failed)
        worker.draftTokens.connect(self._on_draft_tokens)
        worker.counted.connect(self._on_counted)
        worker.unavailable.connect(self._on_unavailable)
        worker.modelReady.connect(self._on_model_ready)
        worker.modelFailed.connect(self._on_model_failed)

    @property
    def latest_request(self) -> int:
        """The id of the newest count request (-1 before the first)."""
        return self._latest.get()

    @Slot(str)
    def set_model(self, path: str) -> None:
        """Load this model's vocabulary for counting ("" forgets the current one)."""
        if self.is_running:
            self._setModelRequested.emit(str(path))

    @Slot(int, str, object, object, int)
    def count(
        self, request_id: int, draft: str, messages: object, max_tokens: object, n_ctx: int
    ) -> None:
        """Queue counting `draft` after `messages` (a sequence of `Message`: system prompt
        and history) for a reply of `max_tokens` (int or None) in a context of `n_ctx`
        tokens (0: the model's own). Request ids must increase."""
        if not self.is_running:
            return
        self._latest.set(request_id)
        snapshot = tuple(messages) if isinstance(messages, Sequence) else ()
        self._countRequested.emit(request_id, draft, snapshot, max_tokens, n_ctx)

    def describe(
        self, request_id: int, messages: Sequence[Message], max_tokens: int | None, n_ctx: int
    ) -> None:
        """Queue splitting the prompt for `messages` (system prompt, history, draft as a
        user message) into parts, for a reply of `max_tokens` in `n_ctx` tokens (0: the
        model's own). Ids must increase; they are separate from `count`'s."""
        if not self.is_running:
            return
        self._latest_describe.set(request_id)
        self._describeRequested.emit(request_id, tuple(messages), max_tokens, n_ctx)

    @Slot(int, object)
    def _on_described(self, request_id: int, parts: object) -> None:
        if request_id == self._latest_describe.get() and not self._stopped:
            self.described.emit(request_id, parts)

    @Slot(int, str)
    def _on_describe_failed(self, request_id: int, reason: str) -> None:
        if request_id == self._latest_describe.get() and not self._stopped:
            self.describeFailed.emit(request_id, reason)

    def before_stop(self) -> None:
        """Make every queued request stale, so the worker skips it, and stop a chat
        template still rendering (a template that never ends must not hold up closing)."""
        self._latest.set(2**62)
        self._latest_describe.set(2**62)
        self.worker.stop_rendering.set()

    @Slot(int, object)
    def _on_draft_tokens(self, request_id: int, pieces: object) -> None:
        if request_id == self._latest.get() and not self._stopped:
            self.draftTokens.emit(request_id, pieces)

    @Slot(int, int, int, int, object)
    def _on_counted(
        self, request_id: int, draft_tokens: int, prompt_tokens: int, limit: int, dropped: object
    ) -> None:
        if request_id == self._latest.get() and not self._stopped:
            self.counted.emit(request_id, draft_tokens, prompt_tokens, limit, dropped)

    @Slot(int, str)
    def _on_unavailable(self, request_id: int, reason: str) -> None:
        if request_id == self._latest.get() and not self._stopped:
            self.unavailable.emit(request_id, reason)

    @Slot(str)
    def _on_model_ready(self, path: str) -> None:
        self.modelReady.emit(path)

    @Slot(str, str)
    def _on_model_failed(self, path: str, reason: str) -> None:
        self.modelFailed.emit(path, reason)
