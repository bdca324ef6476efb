"""A chat template that fails: offer the plain transcript format, and switch on request.

A template that raises, loops past its budget or renders nothing fails the reply with a
`ChatTemplateError` whose message ends with `FALLBACK_OFFER` (when the plain transcript
would help); the worker's `failed` signal carries only that message, so the offer is
recognised by it. "Use plain transcript" asks the worker to switch the loaded model's
format (until another model is loaded); the worker confirms with `templateChanged`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from app.core.inference.prompt import FALLBACK_OFFER
from app.workers.inference_thread import InferenceThread


class TemplateFallback(QObject):
    """Offers the plain transcript after a chat template failed, and asks for it.

    Signals:
        offer(str): Show this failure with a "Use plain transcript" button.
        notice(str, bool): Text for the notice bar (the switch, confirmed).
        status(str, int): A passing status-bar message and its timeout in ms.
    """

    offer = Signal(str)
    notice = Signal(str, bool)
    status = Signal(str, int)

    def __init__(self, inference: InferenceThread, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("templateFallback")
        self._inference = inference
        inference.worker.failed.connect(self._on_failed)
        inference.worker.templateChanged.connect(self._on_changed)

    @Slot(int, str)
    def _on_failed(self, _request_id: int, message: str) -> None:
        if FALLBACK_OFFER in message:
            self.offer.emit(message)

    @Slot()
    def use_plain_transcript(self) -> None:
        """Switch the loaded model to the plain transcript format (queued on the worker)."""
        self._inference.use_plain_transcript()

    @Slot(str)
    def _on_changed(self, sentence: str) -> None:
        self.notice.emit(f"{sentence} Press Regenerate on the failed reply to try again.", False)
