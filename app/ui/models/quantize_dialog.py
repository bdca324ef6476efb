"""The "Quantize" dialog: make a smaller copy of a model with llama.cpp's own quantizer.

It shows the size before and the predicted size and memory after for the chosen type, asks
for explicit consent to requantize an already quantized model (quality drops twice), and
runs the quantizer in a child process with progress (tensor i of n) and Cancel.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.models.library import LibraryModel
from app.core.models.quantize import (
    QUANT_TARGETS,
    QuantizePlan,
    QuantizeProgress,
    QuantizeResult,
    plan_quantize,
)
from app.core.paths import AppPaths
from app.core.units import format_bytes
from app.ui.widgets import named
from app.workers.background import JobSet
from app.workers.model_jobs import QuantizeJob

DEFAULT_TARGET = "Q4_K_M"
TARGET_NOTES = {
    "Q8_0": "8.5 bits per weight: nearly lossless, half of F16",
    "Q6_K": "6.6 bits: very close to the original",
    "Q5_K_M": "5.7 bits: high quality",
    "Q5_K_S": "5.5 bits: high quality, a bit smaller",
    "Q4_K_M": "4.8 bits: the usual best balance",
    "Q4_K_S": "4.6 bits: a bit smaller than Q4_K_M",
    "Q4_0": "4.5 bits: simple and fast, lower quality",
    "Q3_K_M": "3.9 bits: noticeably worse",
    "Q2_K": "3.0 bits: much worse, for very tight memory",
}


class QuantizeDialog(QDialog):
    """Plans and runs one quantization.

    Object names: quantizeDialog, quantizeTarget, requantizeCheck, quantizePlanLabel,
    quantizeProgress, quantizeStatusLabel, startQuantizeButton, cancelQuantizeButton,
    loadQuantizedButton.

    Signals:
        quantized(object): The `QuantizeResult` of a finished run.
        loadRequested(object): Load the new model (a `Path`).
    """

    quantized = Signal(object)
    loadRequested = Signal(object)

    def __init__(self, paths: AppPaths, model: LibraryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "quantizeDialog", "Quantize a model")
        self.setWindowTitle(f"Quantize {model.name}")
        self.resize(560, 360)
        self._paths = paths
        self._model = model
        self._plan: QuantizePlan | None = None
        self._plan_serial = 0
        self._job: QuantizeJob | None = None
        self._result: QuantizeResult | None = None
        self._jobs = JobSet(self)

        intro = QLabel(
            f"Make a smaller copy of <b>{html.escape(model.name)}</b> "
            f"({html.escape(model.quant)}, {format_bytes(model.size_bytes)}). Fewer bits per "
            "weight need less memory and run faster, at some loss of quality. The original "
            "is kept."
        )
        intro.setWordWrap(True)
        self._target = QComboBox()
        named(self._target, "quantizeTarget", "Quantization type")
        for target in QUANT_TARGETS:
            self._target.addItem(f"{target} — {TARGET_NOTES.get(target, '')}", target)
        self._target.setCurrentIndex(max(0, self._target.findData(DEFAULT_TARGET)))
        self._target.currentIndexChanged.connect(self.replan)
        self._requantize = QCheckBox(
            "Requantize anyway (this model is already quantized: quality drops a second time)"
        )
        named(self._requantize, "requantizeCheck", "Allow requantizing")
        self._requantize.setVisible(model.quant.upper() not in ("F32", "F16", "BF16"))
        self._requantize.toggled.connect(self.replan)
        form = QFormLayout()
        form.addRow("Quantize to:", self._target)
        form.addRow("", self._requantize)

        self._plan_label = QLabel("Working out the sizes…")
        named(self._plan_label, "quantizePlanLabel", "Sizes before and after")
        self._plan_label.setWordWrap(True)
        self._progress = QProgressBar()
        named(self._progress, "quantizeProgress", "Quantization progress")
        self._progress.hide()
        self._status = QLabel()
        named(self._status, "quantizeStatusLabel", "Quantization status")
        self._status.setWordWrap(True)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self._start = QPushButton("Quantize")
        named(self._start, "startQuantizeButton", "Start quantizing")
        self._start.setEnabled(False)
        self._start.clicked.connect(self.start)
        self._cancel = QPushButton("Cancel")
        named(self._cancel, "cancelQuantizeButton", "Cancel quantizing")
        self._cancel.hide()
        self._cancel.clicked.connect(self.cancel)
        self._load = QPushButton("Load it")
        named(self._load, "loadQuantizedButton", "Load the new model")
        self._load.hide()
        self._load.clicked.connect(self._on_load)
        for button in (self._start, self._cancel, self._load):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self._plan_label)
        layout.addWidget(self._progress)
        layout.addWidget(self._status)
        layout.addStretch(1)
        layout.addWidget(buttons)
        self.replan()

    # ----- reading -----

    @property
    def plan(self) -> QuantizePlan | None:
        """The plan on show (None while it is worked out or invalid)."""
        return self._plan

    @property
    def outcome(self) -> QuantizeResult | None:
        """The finished run's result."""
        return self._result

    @property
    def is_running(self) -> bool:
        """Quantizing now."""
        return self._job is not None

    def select_target(self, target: str) -> None:
        """Choose a quantization type."""
        self._target.setCurrentIndex(self._target.findData(target))

    def set_requantize(self, allowed: bool) -> None:
        """Tick or untick "Requantize anyway"."""
        self._requantize.setChecked(allowed)

    # ----- planning -----

    @Slot()
    def replan(self) -> None:
        """Work out sizes and checks for the chosen type (in the background)."""
        self._plan = None
        self._start.setEnabled(False)
        self._plan_serial += 1
        serial = self._plan_serial
        paths, source = self._paths, self._model.path
        target = str(self._target.currentData())
        allow = self._requantize.isChecked()
        self._plan_label.setText("Working out the sizes…")
        job = self._jobs.start(
            lambda: plan_quantize(paths, source, target, allow_requantize=allow),
            "hearth-quantize-plan",
        )
        job.succeeded.connect(lambda plan: self._on_plan(serial, plan))
        job.failed.connect(lambda message: self._on_plan_failed(serial, message))

    def _on_plan(self, serial: int, plan: object) -> None:
        if serial != self._plan_serial or not isinstance(plan, QuantizePlan):
            return
        self._plan = plan
        ratio = plan.predicted_size / plan.source_size if plan.source_size else 0
        text = (
            f"<b>Now:</b> {html.escape(plan.source_quant)}, {format_bytes(plan.source_size)}<br>"
            f"<b>After:</b> {html.escape(plan.target)}, about "
            f"{format_bytes(plan.predicted_size)} ({ratio:.0%} of now); about "
            f"{format_bytes(plan.predicted_memory)} of memory to run it<br>"
            f"<span style='color:gray'>Saved as {html.escape(str(plan.output))}</span>"
        )
        if plan.warning:
            text += f"<br><span style='color:#b9770e'>{html.escape(plan.warning)}</span>"
        self._plan_label.setText(text)
        self._start.setEnabled(self._job is None)

    def _on_plan_failed(self, serial: int, message: str) -> None:
        if serial == self._plan_serial:
            self._plan_label.setText(html.escape(message))

    # ----- running -----

    @Slot()
    def start(self) -> None:
        """Quantize with the current plan."""
        plan = self._plan
        if plan is None or self._job is not None:
            return
        job = QuantizeJob(plan, self)
        job.progressed.connect(self._on_progress)
        job.succeeded.connect(self._on_done)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self._job = job
        self._progress.setRange(0, 0)
        self._progress.show()
        self._status.setText("Starting llama.cpp's quantizer…")
        self._start.setEnabled(False)
        self._target.setEnabled(False)
        self._requantize.setEnabled(False)
        self._cancel.show()
        job.start()

    @Slot()
    def cancel(self) -> None:
        """Stop quantizing; the partial file is removed."""
        if self._job is not None:
            self._status.setText("Cancelling…")
            self._job.cancel()

    @Slot(object)
    def _on_progress(self, progress: object) -> None:
        if not isinstance(progress, QuantizeProgress):
            return
        self._progress.setRange(0, progress.tensor_count)
        self._progress.setValue(progress.tensor_index)
        self._status.setText(
            f"Tensor {progress.tensor_index} of {progress.tensor_count}: {progress.tensor_name}"
        )

    @Slot(object)
    def _on_done(self, result: object) -> None:
        if not isinstance(result, QuantizeResult):
            return
        self._result = result
        self._progress.setRange(0, 1)
        self._progress.setValue(1)
        self._status.setText(
            f"Done in {result.seconds:.1f} s: {result.output.name}, "
            f"{format_bytes(result.size_bytes)}."
        )
        self._load.show()
        self.quantized.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._progress.hide()
        self._status.setText(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._progress.hide()
        self._status.setText("Cancelled; no partial file is left.")

    @Slot()
    def _on_finished(self) -> None:
        job = self._job
        self._job = None
        if job is not None:
            job.deleteLater()
        self._cancel.hide()
        self._target.setEnabled(True)
        self._requantize.setEnabled(True)
        if self._result is None:
            self.replan()

    @Slot()
    def _on_load(self) -> None:
        if self._result is not None:
            self.loadRequested.emit(Path(self._result.output))
            self.accept()

    def shutdown(self, timeout_ms: int) -> bool:
        """Cancel a run in progress and wait for the dialog's jobs (at app exit)."""
        job = self._job
        if job is not None:
            job.cancel()
            if not job.wait(timeout_ms):
                return False
        return self._jobs.wait(timeout_ms)

    def reject(self) -> None:
        """Closing cancels a run in progress."""
        self.cancel()
        super().reject()
