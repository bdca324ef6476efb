"""The "Load options" dialog: how one model is loaded (GPU layers, context, KV cache, flash
attention, mmap, mlock, threads), with a live estimate of the memory it will take.

The dialog only edits values: `options()` is what the person chose (None while a value is
invalid; the reason is shown in the dialog). The window saves the accepted options for the
model and reloads it with them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import cast

from PySide6.QtCore import QSignalBlocker, Qt, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import InvalidSettingError
from app.core.gguf_file import GGUFInfo
from app.core.inference.gpu_fallback import plan_load
from app.core.inference.load_options import LoadOptions
from app.core.machine.hardware import MachineReport
from app.core.machine.offload import OffloadPlan, model_layout
from app.core.units import format_bytes
from app.ui.widgets import named as _named

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
"""KV cache types offered: full precision, then about 1/2 and 1/4 of its memory."""
UNQUANTIZED_V = ("f16", "f32")
FLASH_ATTENTION = (("auto", "Auto"), ("on", "On"), ("off", "Off"))
_MAX_CONTEXT = 1 << 20
_SPLIT_SEPARATORS = re.compile(r"[,;/:\s]+")

NO_GPU_BUILD_NOTE = (
    "This llama.cpp build cannot use a GPU (it was built for the CPU only), so every layer "
    "runs on the CPU. Help → About this machine says which build to install for your GPU."
)


def parse_tensor_split(text: str, n_gpus: int) -> tuple[float, ...]:
    """Shares of the layers per GPU from "3,1" (or "3 1", "3/1"); "" is automatic.

    Raises:
        InvalidSettingError: Not numbers, or more shares than GPUs.
    """
    parts = [part for part in _SPLIT_SEPARATORS.split(text.strip()) if part]
    if not parts:
        return ()
    try:
        shares = tuple(float(part) for part in parts)
    except ValueError:
        raise InvalidSettingError(
            f"tensor split takes one number per GPU, like 3,1 (got {text.strip()!r})"
        ) from None
    if len(shares) > n_gpus:
        raise InvalidSettingError(
            f"tensor split has {len(shares)} shares but there are {n_gpus} GPUs"
        )
    return shares


def format_tensor_split(split: tuple[float, ...]) -> str:
    """The text `parse_tensor_split` reads back."""
    return ", ".join(f"{share:g}" for share in split)


class LoadOptionsDialog(QDialog):
    """Edit one model's `LoadOptions`, with the memory they will take.

    GPU layers go from 0 to the model's n_layer + 1 (llama.cpp counts the output layer);
    "Auto" plans them from the GPUs' free memory. A quantized V cache needs flash
    attention, so choosing one turns flash attention on and "Off" cannot be chosen. On a
    build that cannot use a GPU the GPU controls are disabled, with the reason.
    Options the dialog does not show (batch sizes, and the GPU split on a machine with one
    GPU) keep the values given.

    Object names: loadOptionsDialog, gpuAutoCheck, gpuLayersSlider, gpuLayersSpin,
    gpuNoteLabel, mainGpuCombo, tensorSplitEdit (the last two with several GPUs),
    contextSpin, kvTypeKCombo, kvTypeVCombo, flashAttnCombo, flashNoteLabel, threadsSpin,
    mmapCheck, mlockCheck, memoryPreviewLabel, loadOptionsErrorLabel, loadOptionsOkButton,
    loadOptionsCancelButton, loadOptionsDefaultsButton.
    """

    def __init__(
        self,
        info: GGUFInfo,
        options: LoadOptions,
        report: MachineReport,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        _named(self, "loadOptionsDialog", "Load options")
        self.setWindowTitle(f"Load options — {info.path.name}")
        self._info = info
        self._base = options
        self._report = report
        self._gpus = report.gpus
        self._offload = bool(report.gpu_offload)
        self._n_units = model_layout(info).n_layers_total
        self._options: LoadOptions | None = options
        self._plan: OffloadPlan | None = None
        self._v_quantized = options.type_v not in UNQUANTIZED_V
        self._error = ""
        self._build()
        self.set_options(options)

    # ----- construction -----

    def _build(self) -> None:
        header = QLabel(
            f"<b>{self._info.name or self._info.path.stem}</b><br>"
            "Saved for this model and used every time it loads."
        )
        header.setObjectName("loadOptionsHeader")
        header.setWordWrap(True)

        self.setMinimumWidth(480)
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(self._build_gpu_group())
        layout.addWidget(self._build_context_group())
        layout.addWidget(self._build_cpu_group())

        self._preview = QLabel()
        _named(self._preview, "memoryPreviewLabel", "Expected memory use")
        self._preview.setWordWrap(True)
        self._preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self._preview)
        self._error_label = QLabel()
        _named(self._error_label, "loadOptionsErrorLabel", "Problem with these options")
        self._error_label.setWordWrap(True)
        self._error_label.setStyleSheet("color: #b00020;")
        self._error_label.hide()
        layout.addWidget(self._error_label)

        self._buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self._buttons.setObjectName("loadOptionsButtons")
        ok = self._buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Save and reload")
        _named(ok, "loadOptionsOkButton", "Save these options and reload the model")
        cancel = self._buttons.button(QDialogButtonBox.StandardButton.Cancel)
        _named(cancel, "loadOptionsCancelButton", "Cancel without changes")
        defaults = self._buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        defaults.setText("Defaults")
        _named(defaults, "loadOptionsDefaultsButton", "Fill in Hearth's defaults")
        self._ok = ok
        self._buttons.accepted.connect(self._on_accept)
        self._buttons.rejected.connect(self.reject)
        defaults.clicked.connect(self._restore_defaults)
        layout.addWidget(self._buttons)

    def _build_gpu_group(self) -> QGroupBox:
        group = QGroupBox("GPU offload")
        group.setObjectName("gpuGroup")
        column = QVBoxLayout(group)
        form = QFormLayout()
        column.addLayout(form)
        self._auto = QCheckBox("Auto (fits free VRAM)")
        _named(self._auto, "gpuAutoCheck", "GPU layers: automatic")
        self._auto.setToolTip(
            "As many layers as fit in the GPUs' free memory, keeping some spare. If the GPU "
            "still runs out of memory, Hearth retries with fewer layers and tells you."
        )
        self._auto.toggled.connect(self._on_changed)
        form.addRow(self._auto)
        self._slider = QSlider(Qt.Orientation.Horizontal)
        _named(self._slider, "gpuLayersSlider", "GPU layers")
        self._slider.setRange(0, self._n_units)
        self._slider.setPageStep(max(1, self._n_units // 8))
        self._spin = QSpinBox()
        _named(self._spin, "gpuLayersSpin", "GPU layers, exact number")
        self._spin.setRange(0, self._n_units)
        self._spin.setSuffix(f" of {self._n_units}")
        tip = (
            f"Layers on the GPU, of {self._n_units} (the model's {self._info.n_layer} blocks "
            "and its output layer); the rest run on the CPU. 0: CPU only."
        )
        self._slider.setToolTip(tip)
        self._spin.setToolTip(tip)
        self._slider.valueChanged.connect(self._on_slider)
        self._spin.valueChanged.connect(self._on_spin)
        row = QHBoxLayout()
        row.addWidget(self._slider, 1)
        row.addWidget(self._spin)
        form.addRow("GPU layers:", row)
        self._gpu_note = QLabel()
        _named(self._gpu_note, "gpuNoteLabel", "About GPU offload")
        self._gpu_note.setWordWrap(True)
        column.addWidget(self._gpu_note)  # a wrapped label outside the form gets its height
        form = QFormLayout()
        column.addLayout(form)

        self._main_gpu: QComboBox | None = None
        self._split: QLineEdit | None = None
        if len(self._gpus) > 1:
            self._main_gpu = QComboBox()
            _named(self._main_gpu, "mainGpuCombo", "Main GPU")
            for index, gpu in enumerate(self._gpus):
                free = f", {format_bytes(gpu.memory_free)} free" if gpu.memory_free else ""
                self._main_gpu.addItem(f"{index}: {gpu.description or gpu.name}{free}", index)
            self._main_gpu.setToolTip("The GPU llama.cpp uses for what is not split by layer.")
            self._main_gpu.currentIndexChanged.connect(self._on_changed)
            form.addRow("Main GPU:", self._main_gpu)
            self._split = QLineEdit()
            _named(self._split, "tensorSplitEdit", "Tensor split")
            self._split.setPlaceholderText("by free memory")
            self._split.setToolTip(
                "Share of the layers for each GPU in order, like 3,1; empty splits by free "
                "memory. Auto GPU layers always split by free memory."
            )
            self._split.textChanged.connect(self._on_changed)
            form.addRow("Tensor split:", self._split)
        return group

    def _build_context_group(self) -> QGroupBox:
        group = QGroupBox("Context and KV cache")
        group.setObjectName("contextGroup")
        column = QVBoxLayout(group)
        form = QFormLayout()
        column.addLayout(form)
        trained = self._info.context_length
        self._context = QSpinBox()
        _named(self._context, "contextSpin", "Context length in tokens")
        self._context.setRange(0, trained or _MAX_CONTEXT)
        self._context.setSingleStep(512)
        self._context.setGroupSeparatorShown(True)
        self._context.setSuffix(" tokens")
        self._context.setSpecialValueText(
            f"Model's own ({trained:,} tokens)" if trained else "Model's own"
        )
        self._context.setToolTip(
            "Tokens the model can see at once: the chat and the reply. A longer context "
            "takes more memory (the KV cache grows with it)."
        )
        self._context.valueChanged.connect(self._on_changed)
        form.addRow("Context length:", self._context)

        self._type_k = self._kv_combo("kvTypeKCombo", "KV cache type of keys")
        self._type_v = self._kv_combo("kvTypeVCombo", "KV cache type of values")
        form.addRow("KV cache K:", self._type_k)
        form.addRow("KV cache V:", self._type_v)
        self._flash = QComboBox()
        _named(self._flash, "flashAttnCombo", "Flash attention")
        for value, label in FLASH_ATTENTION:
            self._flash.addItem(label, value)
        self._flash.setToolTip(
            "Faster attention with less memory where the device supports it; Auto lets "
            "llama.cpp decide."
        )
        self._flash.currentIndexChanged.connect(self._on_changed)
        form.addRow("Flash attention:", self._flash)
        self._flash_note = QLabel()
        _named(self._flash_note, "flashNoteLabel", "Why flash attention is on")
        self._flash_note.setWordWrap(True)
        self._flash_note.hide()
        column.addWidget(self._flash_note)
        return group

    def _kv_combo(self, object_name: str, accessible_name: str) -> QComboBox:
        combo = QComboBox()
        _named(combo, object_name, accessible_name)
        for kv_type in KV_CACHE_TYPES:
            combo.addItem(kv_type, kv_type)
        combo.setToolTip(
            "f16 keeps full precision; q8_0 halves the KV cache's memory and q4_0 quarters "
            "it, at a small cost in quality."
        )
        combo.currentIndexChanged.connect(self._on_changed)
        return combo

    def _build_cpu_group(self) -> QGroupBox:
        group = QGroupBox("CPU and memory")
        group.setObjectName("cpuGroup")
        form = QFormLayout(group)
        self._threads = QSpinBox()
        _named(self._threads, "threadsSpin", "CPU threads")
        self._threads.setRange(0, max(os.cpu_count() or 1, self._report.threads, 1))
        self._threads.setSpecialValueText(f"Auto ({self._report.threads})")
        self._threads.setToolTip("Threads for the layers that run on the CPU.")
        self._threads.valueChanged.connect(self._on_changed)
        form.addRow("Threads:", self._threads)
        self._mmap = QCheckBox("Map the file into memory (mmap)")
        _named(self._mmap, "mmapCheck", "Map the model file into memory")
        self._mmap.setToolTip(
            "Loads faster and lets the system share and drop the pages; turn off if the "
            "file is on a slow or network drive."
        )
        self._mmap.setEnabled(self._report.mmap is not False)
        self._mmap.toggled.connect(self._on_changed)
        form.addRow(self._mmap)
        self._mlock = QCheckBox("Keep the model in RAM (mlock)")
        _named(self._mlock, "mlockCheck", "Lock the model in RAM")
        self._mlock.setToolTip(
            "Stops the system from swapping the model out; needs enough free RAM and may "
            "need a higher memory-lock limit."
        )
        self._mlock.setEnabled(self._report.mlock is not False)
        self._mlock.toggled.connect(self._on_changed)
        form.addRow(self._mlock)
        return group

    # ----- values -----

    def set_options(self, options: LoadOptions) -> None:
        """Show these options (without saving anything)."""
        blockers = [QSignalBlocker(w) for w in self._inputs()]
        auto = options.n_gpu_layers is None
        self._auto.setChecked(auto)
        layers = options.n_gpu_layers
        shown = self._n_units if layers is None or layers < 0 else min(layers, self._n_units)
        self._slider.setValue(shown)
        self._spin.setValue(shown)
        if self._main_gpu is not None:
            self._main_gpu.setCurrentIndex(min(options.main_gpu, self._main_gpu.count() - 1))
        if self._split is not None:
            self._split.setText(format_tensor_split(options.tensor_split))
        self._context.setValue(min(options.n_ctx, self._context.maximum()))
        self._select(self._type_k, options.type_k)
        self._select(self._type_v, options.type_v)
        self._flash.setCurrentIndex(max(self._flash.findData(options.flash_attn), 0))
        self._threads.setValue(options.n_threads or 0)
        self._mmap.setChecked(options.use_mmap)
        self._mlock.setChecked(options.use_mlock)
        for blocker in blockers:
            blocker.unblock()
        self._v_quantized = options.type_v not in UNQUANTIZED_V
        self._on_changed()

    def options(self) -> LoadOptions | None:
        """The options chosen, or None while one is invalid (see `error_text`)."""
        return self._options

    @property
    def error_text(self) -> str:
        """Why the options cannot be used ("" when they can)."""
        return self._error

    @property
    def plan(self) -> OffloadPlan | None:
        """The estimate on show: the GPU layers the first load tries and their memory."""
        return self._plan

    def _inputs(self) -> list[QWidget]:
        widgets: list[QWidget] = [
            self._auto,
            self._slider,
            self._spin,
            self._context,
            self._type_k,
            self._type_v,
            self._flash,
            self._threads,
            self._mmap,
            self._mlock,
        ]
        widgets += [w for w in (self._main_gpu, self._split) if w is not None]
        return widgets

    @staticmethod
    def _select(combo: QComboBox, value: str) -> None:
        index = combo.findData(value)
        if index < 0:  # a type saved elsewhere (the CLI): keep it choosable
            combo.addItem(value, value)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    def _collect(self) -> LoadOptions:
        base = self._base
        layers: int | None = base.n_gpu_layers
        if self._offload:
            layers = None if self._auto.isChecked() else self._spin.value()
        split = base.tensor_split
        if self._split is not None:
            split = parse_tensor_split(self._split.text(), len(self._gpus))
        return dataclasses.replace(
            base,
            n_ctx=self._context.value(),
            n_gpu_layers=layers,
            n_threads=self._threads.value() or None,
            flash_attn=self._flash.currentData(),
            type_k=self._type_k.currentData(),
            type_v=self._type_v.currentData(),
            use_mmap=self._mmap.isChecked(),
            use_mlock=self._mlock.isChecked(),
            main_gpu=self._main_gpu.currentData() if self._main_gpu is not None else base.main_gpu,
            tensor_split=split,
        )

    # ----- reactions -----

    @Slot(int)
    def _on_slider(self, value: int) -> None:
        if self._spin.value() != value:
            self._spin.setValue(value)  # which calls _on_changed

    @Slot(int)
    def _on_spin(self, value: int) -> None:
        if self._slider.value() != value:
            with QSignalBlocker(self._slider):
                self._slider.setValue(value)
        self._on_changed()

    @Slot()
    def _on_changed(self) -> None:
        self._apply_flash_dependency()
        self._apply_gpu_state()
        try:
            options = self._collect()
        except InvalidSettingError as exc:
            self._show_error(exc.message)
            return
        self._options = options
        self._show_error("")
        self._show_preview(options)

    def _apply_flash_dependency(self) -> None:
        """A quantized V cache needs flash attention: choosing one turns it on, and "off"
        cannot be chosen while it stays."""
        v_type = self._type_v.currentData()
        needs_flash = v_type not in UNQUANTIZED_V
        newly = needs_flash and not self._v_quantized
        self._v_quantized = needs_flash
        off = self._flash.findData("off")
        item = cast(QStandardItemModel, self._flash.model()).item(off)
        item.setEnabled(not needs_flash)
        if needs_flash and (newly or self._flash.currentData() == "off"):
            with QSignalBlocker(self._flash):
                self._flash.setCurrentIndex(self._flash.findData("on"))
        self._flash_note.setVisible(needs_flash)
        if needs_flash:
            how = "so it is on" if self._flash.currentData() == "on" else "and Auto turns it on"
            self._flash_note.setText(
                f"A quantized V cache ({v_type}) needs flash attention, {how}; "
                "“Off” can be chosen again with an f16 V cache."
            )

    def _apply_gpu_state(self) -> None:
        auto = self._auto.isChecked()
        self._auto.setEnabled(self._offload)
        self._slider.setEnabled(self._offload and not auto)
        self._spin.setEnabled(self._offload and not auto)
        if self._main_gpu is not None:
            self._main_gpu.setEnabled(self._offload)
        if self._split is not None:
            self._split.setEnabled(self._offload and not auto)
        if not self._offload:
            self._gpu_note.setText(NO_GPU_BUILD_NOTE)

    def _show_preview(self, options: LoadOptions) -> None:
        free = [gpu.memory_free for gpu in self._gpus]
        try:
            plan = plan_load(self._info, options, free, offload_supported=self._offload)
        except InvalidSettingError as exc:
            self._show_error(exc.message)
            return
        self._plan = plan
        if self._offload and options.n_gpu_layers is None:
            with QSignalBlocker(self._slider), QSignalBlocker(self._spin):
                self._slider.setValue(plan.n_gpu_layers)
                self._spin.setValue(plan.n_gpu_layers)
            self._gpu_note.setText(plan.reason)
        elif self._offload:
            self._gpu_note.setText(self._manual_note(plan, free))
        ram = format_bytes(plan.expected_ram)
        if plan.n_gpu_layers:
            per_gpu = ""
            if len(plan.vram_per_device) > 1:
                per_gpu = " (" + " + ".join(format_bytes(v) for v in plan.vram_per_device) + ")"
            where = f"{plan.n_gpu_layers} of {plan.n_layers_total} layers on the GPU"
            text = (
                f"Expected: about {format_bytes(plan.expected_vram)} of GPU memory{per_gpu} "
                f"and {ram} of RAM, with {where}."
            )
        else:
            text = f"Expected: about {ram} of RAM, with every layer on the CPU."
        self._preview.setText(text)

    def _manual_note(self, plan: OffloadPlan, free: list[int]) -> str:
        if not free:
            return "llama.cpp sees no GPU, so every layer will run on the CPU."
        over = [
            f"GPU {i} needs about {format_bytes(used)} but has {format_bytes(free[i])} free"
            for i, used in enumerate(plan.vram_per_device)
            if i < len(free) and free[i] and used > free[i]
        ]
        if over:
            return (
                "; ".join(over) + ": loading will run out of GPU memory, and Hearth will "
                "retry with fewer layers."
            )
        return f"{plan.n_gpu_layers} of {plan.n_layers_total} layers on the GPU, as chosen."

    def _show_error(self, message: str) -> None:
        self._error = message
        if message:
            self._options = None
            self._plan = None
            self._error_label.setText(message[:1].upper() + message[1:])
        self._error_label.setVisible(bool(message))
        self._ok.setEnabled(not message)

    @Slot()
    def _restore_defaults(self) -> None:
        self.set_options(LoadOptions())

    @Slot()
    def _on_accept(self) -> None:
        if self._options is not None:
            self.accept()

    @property
    def ok_button(self) -> QPushButton:
        """The "Save and reload" button."""
        return self._ok
