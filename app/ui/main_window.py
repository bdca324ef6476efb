"""The main window: a minimal chat with the loaded model.

The window keeps the conversation as a list of `Message`, sends an immutable snapshot of it
with a request id to the inference worker, and appends the streamed reply to the
transcript. Events whose request id is not the current one are ignored. The window never
waits on the engine, except for the bounded, ordered stop when it closes.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QFont,
    QKeyEvent,
    QKeySequence,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat import Message
from app.core.engine import LoadedModel, LoadOptions
from app.core.events import GenerationDone, GenerationStats, PrefillStarted, StopReason
from app.core.prompt import FALLBACK_NOTICE
from app.core.sampling import SamplingSettings, SettingsHolder
from app.workers.inference import InferenceThread

log = logging.getLogger(__name__)

WINDOW_TITLE = "Hearth"
_PREFILL_STATUS_MIN_TOKENS = 256

_STOP_REASON_TEXT = {
    StopReason.END_OF_TURN: "end of turn",
    StopReason.STOP_STRING: "stop string",
    StopReason.MAX_TOKENS: "max tokens",
    StopReason.CANCELLED: "stopped",
    StopReason.CONTEXT_FULL: "context full",
}


def format_stats(stats: GenerationStats) -> str:
    """One line a person can read: tokens, speed, time to first token, why it stopped, seed."""
    reason = _STOP_REASON_TEXT.get(stats.stop_reason, stats.stop_reason.value)
    return (
        f"{stats.completion_tokens} tokens · {stats.decode_tps:.1f} tok/s · "
        f"TTFT {stats.ttft_ms:.0f} ms · {reason} · seed {stats.seed}"
    )


def _named(widget: QWidget, object_name: str, accessible_name: str) -> None:
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)


class Composer(QPlainTextEdit):
    """Where the person writes: Enter sends, Shift+Enter starts a new line.

    Signals:
        submitted(): Enter was pressed without Shift.
    """

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        is_enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if is_enter and not (event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            event.accept()
            self.submitted.emit()
            return
        if is_enter:  # Shift+Enter: a plain new line, not a Unicode line separator
            self.insertPlainText("\n")
            event.accept()
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    """A minimal chat window over one `InferenceThread`.

    Object names: transcript, composer, sendButton, stopButton, noticeBar, noticeLabel,
    noticeOpenButton, noticeDismissButton, modelStatusLabel, loadProgressBar,
    cancelLoadButton; actions openModelAction, newChatAction, quitAction, stopAction.

    Signals:
        modelLoaded(object): A `LoadedModel` is ready.
        modelLoadEnded(): A load ended without a model (failed or cancelled).
        replyFinished(int, object): Request id and `GenerationDone` of the current reply.
        replyFailed(int, str): Request id and the reason a reply could not be made.
    """

    modelLoaded = Signal(object)
    modelLoadEnded = Signal()
    replyFinished = Signal(int, object)
    replyFailed = Signal(int, str)

    def __init__(
        self,
        *,
        settings: SamplingSettings | None = None,
        load_options: LoadOptions | None = None,
        models_dir: Path | None = None,
        inference: InferenceThread | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(WINDOW_TITLE)
        self.resize(820, 640)
        self._settings = settings or SamplingSettings()
        self._load_options = load_options
        self._models_dir = models_dir
        self._conversation: list[Message] = []
        self._request_ids = itertools.count(1)
        self._active_request: int | None = None
        self._holder: SettingsHolder | None = None
        self._model: LoadedModel | None = None
        self._loads_pending = 0
        self._shut_down = False
        self._stopped_cleanly = True

        self._build_widgets()
        self._build_actions()
        self._build_formats()

        self._inference = inference or InferenceThread()
        self._connect_worker(self._inference)
        self._inference.start()
        self._update_controls()

    # ----- construction -----

    def _build_widgets(self) -> None:
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
        notice_row.addWidget(self._notice_label, 1)
        notice_row.addWidget(self._notice_open)
        notice_row.addWidget(self._notice_dismiss)
        self._notice_bar.hide()

        self._transcript = QPlainTextEdit()
        _named(self._transcript, "transcript", "Conversation")
        self._transcript.setReadOnly(True)
        self._transcript.setUndoRedoEnabled(False)
        self._transcript.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )

        self._composer = Composer()
        _named(self._composer, "composer", "Message")
        self._composer.setPlaceholderText(
            "Write a message. Enter sends, Shift+Enter starts a new line."
        )
        self._composer.setTabChangesFocus(True)
        lines = self._composer.fontMetrics().lineSpacing()
        self._composer.setFixedHeight(lines * 4 + 12)
        self._composer.submitted.connect(self.send_current_message)

        self._send_button = QPushButton("Send")
        _named(self._send_button, "sendButton", "Send message")
        self._send_button.clicked.connect(self.send_current_message)
        self._stop_button = QPushButton("Stop")
        _named(self._stop_button, "stopButton", "Stop reply")
        self._stop_button.setToolTip("Stop the reply (Esc)")
        self._stop_button.clicked.connect(self.stop_reply)

        buttons = QVBoxLayout()
        buttons.addWidget(self._send_button)
        buttons.addWidget(self._stop_button)
        buttons.addStretch(1)
        composer_row = QHBoxLayout()
        composer_row.addWidget(self._composer, 1)
        composer_row.addLayout(buttons)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self._notice_bar)
        layout.addWidget(self._transcript, 1)
        layout.addLayout(composer_row)
        self.setCentralWidget(central)

        self._model_status = QLabel("No model loaded")
        _named(self._model_status, "modelStatusLabel", "Model status")
        self._load_progress = QProgressBar()
        _named(self._load_progress, "loadProgressBar", "Model loading progress")
        self._load_progress.setRange(0, 100)
        self._load_progress.setMaximumWidth(180)
        self._load_progress.hide()
        self._cancel_load = QPushButton("Cancel")
        _named(self._cancel_load, "cancelLoadButton", "Cancel loading the model")
        self._cancel_load.clicked.connect(self.cancel_load)
        self._cancel_load.hide()
        status = self.statusBar()
        status.setObjectName("statusBar")
        status.addPermanentWidget(self._model_status)
        status.addPermanentWidget(self._load_progress)
        status.addPermanentWidget(self._cancel_load)

    def _build_actions(self) -> None:
        self._open_action = QAction("&Open model…", self)
        self._open_action.setObjectName("openModelAction")
        self._open_action.setShortcut(QKeySequence.StandardKey.Open)
        self._open_action.triggered.connect(self.open_model_dialog)
        self._new_chat_action = QAction("&New chat", self)
        self._new_chat_action.setObjectName("newChatAction")
        self._new_chat_action.setShortcut(QKeySequence.StandardKey.New)
        self._new_chat_action.triggered.connect(self.new_chat)
        self._quit_action = QAction("&Quit", self)
        self._quit_action.setObjectName("quitAction")
        self._quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self._quit_action.triggered.connect(self.close)
        menu = self.menuBar().addMenu("&File")
        menu.setObjectName("fileMenu")
        menu.addAction(self._open_action)
        menu.addAction(self._new_chat_action)
        menu.addSeparator()
        menu.addAction(self._quit_action)

        self._stop_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self._stop_shortcut.setObjectName("stopAction")
        self._stop_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self._stop_shortcut.activated.connect(self.stop_reply)

    def _build_formats(self) -> None:
        self._role_format = QTextCharFormat()
        self._role_format.setFontWeight(QFont.Weight.Bold)
        self._text_format = QTextCharFormat()
        self._note_format = QTextCharFormat()
        self._note_format.setForeground(QColor(120, 120, 120))
        self._error_format = QTextCharFormat()
        self._error_format.setForeground(QColor(170, 30, 30))

    def _connect_worker(self, inference: InferenceThread) -> None:
        worker = inference.worker
        worker.loadProgress.connect(self._on_load_progress)
        worker.loaded.connect(self._on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.loadCancelled.connect(self._on_load_cancelled)
        worker.unloaded.connect(self._on_unloaded)
        worker.prefillStarted.connect(self._on_prefill_started)
        worker.prefillProgress.connect(self._on_prefill_progress)
        worker.tokens.connect(self._on_tokens)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)

    # ----- read-only state -----

    @property
    def inference(self) -> InferenceThread:
        """The inference thread this window drives."""
        return self._inference

    @property
    def conversation(self) -> tuple[Message, ...]:
        """The messages so far (a snapshot)."""
        return tuple(self._conversation)

    @property
    def model(self) -> LoadedModel | None:
        """The model replies come from, or None."""
        return self._model

    @property
    def active_request(self) -> int | None:
        """Request id of the reply being streamed, or None."""
        return self._active_request

    @property
    def is_loading(self) -> bool:
        """True while a model load is in progress or queued."""
        return self._loads_pending > 0

    # ----- notices -----

    def show_notice(self, text: str, *, offer_open: bool = False) -> None:
        """Show a message above the transcript (errors, hints), optionally with Open model…."""
        self._notice_label.setText(text)
        self._notice_open.setVisible(offer_open)
        self._notice_bar.show()

    def show_missing_model(self, reason: str) -> None:
        """Explain that there is no model to chat with and how to get one."""
        self.show_notice(
            f"{reason}\n\nOr open a .gguf file you already have with File → Open model… (Ctrl+O).",
            offer_open=True,
        )

    @Slot()
    def clear_notice(self) -> None:
        """Hide the notice bar."""
        self._notice_bar.hide()
        self._notice_label.clear()

    # ----- models -----

    @Slot()
    def open_model_dialog(self) -> None:
        """Ask for a .gguf file and load it."""
        start = self._models_dir if self._models_dir and self._models_dir.is_dir() else Path.home()
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model", str(start), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.load_model(path)

    def load_model(self, path: Path | str) -> None:
        """Start loading a model; the window stays responsive and shows progress."""
        if self._shut_down:
            return
        if self._active_request is not None:
            self.stop_reply()
        self._loads_pending += 1
        name = Path(path).name
        self._model_status.setText(f"Loading {name}…")
        self._load_progress.setValue(0)
        self._load_progress.show()
        self._cancel_load.show()
        self._update_controls()
        self._inference.load(path, self._load_options)

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
            self._model_status.setText("No model loaded")
            self._model_status.setToolTip("")
            return
        info = model.info
        name = info.name or info.path.stem
        self._model_status.setText(f"{name} · {info.quant} · context {model.n_ctx:,} tokens")
        self._model_status.setToolTip(str(info.path))

    @Slot(float)
    def _on_load_progress(self, fraction: float) -> None:
        self._load_progress.setValue(round(fraction * 100))

    @Slot(object)
    def _on_loaded(self, model: object) -> None:
        assert isinstance(model, LoadedModel)
        self._model = model
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
        if model.template_is_fallback:
            self.show_notice(FALLBACK_NOTICE)
        else:
            self.clear_notice()
        self.modelLoaded.emit(model)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
        self.show_notice(message, offer_open=True)
        self.modelLoadEnded.emit()

    @Slot()
    def _on_load_cancelled(self) -> None:
        self._load_ended()
        if not self._loads_pending:
            self._show_model_status()
            self.statusBar().showMessage("Loading cancelled.", 5000)
        self.modelLoadEnded.emit()

    @Slot()
    def _on_unloaded(self) -> None:
        self._model = None
        if not self._loads_pending:
            self._show_model_status()
        self._update_controls()

    # ----- chat -----

    def focus_composer(self) -> None:
        """Put the keyboard focus in the composer."""
        self._composer.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def send_current_message(self) -> None:
        """Send the composer's text as the next user message (if a reply can start now)."""
        text = self._composer.toPlainText().strip()
        if not text:
            return
        if not self._can_send():
            if self._model is None and not self._loads_pending:
                self.statusBar().showMessage("Open a model first (File → Open model…).", 5000)
            return
        self._composer.clear()
        self._conversation.append(Message("user", text))
        self._write_turn("You", text)
        self._write_turn("Assistant", "")
        request_id = next(self._request_ids)
        self._active_request = request_id
        self._holder = SettingsHolder(self._settings)
        self._update_controls()
        self._inference.generate(request_id, tuple(self._conversation), self._holder)

    @Slot()
    def stop_reply(self) -> None:
        """Stop the reply being streamed (its text so far is kept)."""
        if self._active_request is not None:
            self._inference.cancel(self._active_request)

    @Slot()
    def new_chat(self) -> None:
        """Forget the conversation and clear the transcript."""
        self.stop_reply()
        self._active_request = None
        self._conversation.clear()
        self._transcript.clear()
        self._update_controls()
        self.focus_composer()

    @Slot(int, object)
    def _on_prefill_started(self, request_id: int, event: object) -> None:
        if request_id != self._active_request or not isinstance(event, PrefillStarted):
            return
        if event.dropped:
            self.statusBar().showMessage(
                f"The chat is longer than the context: the {len(event.dropped)} oldest "
                "message(s) were left out of this reply's prompt.",
                10_000,
            )

    @Slot(int, int, int)
    def _on_prefill_progress(self, request_id: int, done: int, total: int) -> None:
        if request_id != self._active_request or total < _PREFILL_STATUS_MIN_TOKENS:
            return
        self.statusBar().showMessage(f"Reading the prompt: {done:,} of {total:,} tokens", 3000)

    @Slot(int, str, int)
    def _on_tokens(self, request_id: int, text: str, _count: int) -> None:
        if request_id != self._active_request or not text:
            return
        self._append(text, self._text_format)

    @Slot(int, object)
    def _on_finished(self, request_id: int, done: object) -> None:
        if request_id != self._active_request or not isinstance(done, GenerationDone):
            return
        if done.tail:
            self._append(done.tail, self._text_format)
        self._conversation.append(Message("assistant", done.text))
        self._write_note(format_stats(done.stats))
        self._active_request = None
        self._holder = None
        self.statusBar().clearMessage()
        self._update_controls()
        self.replyFinished.emit(request_id, done)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id != self._active_request:
            return
        self._write_line(f"(No reply: {message})", self._error_format)
        if self._conversation and self._conversation[-1].role == "user":
            lost = self._conversation.pop()
            if not self._composer.toPlainText().strip():
                self._composer.setPlainText(lost.content)
        self._active_request = None
        self._holder = None
        self.statusBar().clearMessage()
        self._update_controls()
        self.replyFailed.emit(request_id, message)

    def _can_send(self) -> bool:
        return (
            not self._shut_down
            and self._model is not None
            and not self._loads_pending
            and self._active_request is None
        )

    def _update_controls(self) -> None:
        self._send_button.setEnabled(self._can_send())
        self._stop_button.setEnabled(self._active_request is not None)

    # ----- transcript (append at the end with a cursor; never rewrite the whole text) -----

    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self._transcript.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _append(self, text: str, fmt: QTextCharFormat) -> None:
        bar = self._transcript.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 4
        self._end_cursor().insertText(text, fmt)
        if follow:
            bar.setValue(bar.maximum())

    def _write_line(self, text: str, fmt: QTextCharFormat) -> None:
        if not self._transcript.document().isEmpty():
            self._end_cursor().insertBlock()
        self._append(text, fmt)

    def _write_turn(self, role: str, text: str) -> None:
        if not self._transcript.document().isEmpty():
            self._end_cursor().insertBlock()
        self._write_line(role, self._role_format)
        self._write_line(text, self._text_format)

    def _write_note(self, text: str) -> None:
        self._write_line(text, self._note_format)

    # ----- shutdown -----

    def shutdown(self) -> bool:
        """Cancel the reply, stop the worker thread in order (engine freed on its thread).

        Idempotent; returns False if the thread did not stop in time.
        """
        if self._shut_down:
            return self._stopped_cleanly
        self._shut_down = True
        self.stop_reply()
        self._active_request = None
        self._stopped_cleanly = self._inference.stop()
        self._update_controls()
        return self._stopped_cleanly

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
