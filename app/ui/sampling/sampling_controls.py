"""The sampling panel's parts: a slider with an exact number field per setting, stop
strings as text, and the model summary shown at the top of the panel."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QDoubleSpinBox,
    QLabel,
    QSlider,
    QWidget,
)

from app.core.inference.load_options import LoadedModel
from app.core.units import format_bytes
from app.ui.widgets import named as _named


@dataclass(frozen=True)
class NumberSpec:
    """One numeric setting: its field, label, range shown, decimals and slider reach.

    The number field takes the whole range `low`..`high`; the slider covers
    `slider_low`..`slider_high` (defaults: the same), in steps of `step`.
    `special` is shown instead of the lowest value (for "off" / "no limit").
    """

    field: str
    label: str
    low: float
    high: float
    step: float
    decimals: int
    tooltip: str
    slider_high: float | None = None
    special: str = ""

    @property
    def is_int(self) -> bool:
        return self.decimals == 0


NUMBER_SPECS: tuple[NumberSpec, ...] = (
    NumberSpec(
        "temperature",
        "Temperature",
        0.0,
        2.0,
        0.01,
        2,
        "Higher is more varied, lower more focused; 0 always picks the likeliest token.",
    ),
    NumberSpec(
        "top_p",
        "Top-p",
        0.01,
        1.0,
        0.01,
        2,
        "Keep the likeliest tokens until their probabilities add up to this; 1 is off.",
    ),
    NumberSpec(
        "top_k",
        "Top-k",
        0,
        1000,
        1,
        0,
        "Keep only this many likeliest tokens; 0 is off.",
        slider_high=200,
        special="Off",
    ),
    NumberSpec(
        "min_p",
        "Min-p",
        0.0,
        1.0,
        0.01,
        2,
        "Drop tokens less likely than this fraction of the likeliest; 0 is off.",
    ),
    NumberSpec(
        "typical_p",
        "Typical-p",
        0.01,
        1.0,
        0.01,
        2,
        "Locally typical sampling; 1 is off.",
    ),
    NumberSpec(
        "repeat_penalty",
        "Repeat penalty",
        0.01,
        10.0,
        0.01,
        2,
        "Above 1 makes recently used tokens less likely; 1 is off.",
        slider_high=2.0,
    ),
    NumberSpec(
        "presence_penalty",
        "Presence penalty",
        -2.0,
        2.0,
        0.01,
        2,
        "Penalises any token already used; 0 is off.",
    ),
    NumberSpec(
        "frequency_penalty",
        "Frequency penalty",
        -2.0,
        2.0,
        0.01,
        2,
        "Penalises tokens by how often they were used; 0 is off.",
    ),
    NumberSpec(
        "max_tokens",
        "Max tokens",
        0,
        1_000_000,
        1,
        0,
        "The longest reply, in tokens; 'No limit' runs until the model ends its turn.",
        slider_high=4096,
        special="No limit",
    ),
)


class NumberControl(QObject):
    """A slider and an exact number field for one setting, kept in step.

    Signals:
        valueChanged(float): The person changed the value (slider or field).
    """

    valueChanged = Signal(float)

    def __init__(self, spec: NumberSpec, parent: QWidget) -> None:
        super().__init__(parent)
        self.spec = spec
        name = spec.field.replace("_", " ").title().replace(" ", "")
        name = name[0].lower() + name[1:]
        self._scale = 1 / spec.step
        self.label = QLabel(spec.label)
        self.label.setObjectName(f"{name}Label")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        _named(self.slider, f"{name}Slider", f"{spec.label} slider")
        self.slider.setToolTip(spec.tooltip)
        slider_high = spec.slider_high if spec.slider_high is not None else spec.high
        self.slider.setRange(self._to_slider(spec.low), self._to_slider(slider_high))
        self.slider.setSingleStep(1)
        self.slider.setPageStep(max(1, round((slider_high - spec.low) * self._scale / 20)))
        self.spin = QDoubleSpinBox()
        _named(self.spin, f"{name}Spin", spec.label)
        self.spin.setToolTip(spec.tooltip)
        self.spin.setDecimals(spec.decimals)
        self.spin.setRange(spec.low, spec.high)
        self.spin.setSingleStep(spec.step)
        self.spin.setKeyboardTracking(False)
        self.spin.setAccelerated(True)
        self.spin.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)
        if spec.special:
            self.spin.setSpecialValueText(spec.special)
        self.label.setBuddy(self.spin)
        self.cost = QLabel()
        _named(self.cost, f"{name}CostNote", f"{spec.label}: cost on this model")
        self.cost.setWordWrap(True)
        self.cost.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.cost.hide()
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)

    def _to_slider(self, value: float) -> int:
        return round(value * self._scale)

    def set_unsupported(self, reason: str) -> None:
        """Disable the pair with `reason` as its tooltip ("": enabled, the usual tooltip)."""
        for widget in (self.label, self.slider, self.spin):
            widget.setEnabled(not reason)
        for widget in (self.slider, self.spin):
            widget.setToolTip(reason or self.spec.tooltip)

    @property
    def unsupported_reason(self) -> str:
        """Why the pair is disabled ("" when it is not)."""
        return "" if self.slider.isEnabled() else self.slider.toolTip()

    def value(self) -> float:
        """The exact value in the number field."""
        return float(self.spin.value())

    def set_value(self, value: float) -> None:
        """Show a value without emitting `valueChanged`."""
        with QSignalBlocker(self.spin), QSignalBlocker(self.slider):
            self.spin.setValue(value)
            self.slider.setValue(self._to_slider(self.spin.value()))

    @Slot(int)
    def _on_slider(self, position: int) -> None:
        value = position / self._scale
        if self.spec.is_int:
            value = float(round(value))
        if math.isclose(value, self.spin.value(), abs_tol=self.spec.step / 2):
            return
        with QSignalBlocker(self.spin):
            self.spin.setValue(value)
        self.valueChanged.emit(self.value())

    @Slot(float)
    def _on_spin(self, value: float) -> None:
        with QSignalBlocker(self.slider):
            self.slider.setValue(self._to_slider(value))
        self.valueChanged.emit(self.value())


def parse_stop_strings(text: str) -> tuple[str, ...]:
    """Stop strings typed one per line; `\\n` and `\\t` stand for a new line and a tab."""
    found: list[str] = []
    for line in text.split("\n"):
        if not line:
            continue
        value = _unescape(line)
        if value and value not in found:
            found.append(value)
    return tuple(found)


def format_stop_strings(stop: tuple[str, ...]) -> str:
    """The inverse of `parse_stop_strings`."""
    return "\n".join(
        s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for s in stop
    )


def _unescape(line: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            mapped = {"n": "\n", "t": "\t", "\\": "\\"}.get(nxt)
            if mapped is not None:
                out.append(mapped)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def describe_model(model: LoadedModel) -> dict[str, str]:
    """The model facts the panel shows, by row label."""
    info = model.info
    if model.gpu_offload_supported and model.n_gpu_layers != 0:
        layers = info.n_layer + 1 if model.n_gpu_layers < 0 else model.n_gpu_layers
        shown = min(layers, info.n_layer + 1) if info.n_layer else layers
        backend = f"GPU, {shown} layers offloaded"
    else:
        backend = f"CPU, {model.n_threads} threads"
    params = info.n_params
    if params >= 1e9:
        size_params = f"{params / 1e9:.1f} B parameters"
    elif params > 0:
        size_params = f"{params / 1e6:.0f} M parameters"
    else:
        size_params = "unknown"
    trained = f" (trained {info.context_length:,})" if info.context_length else ""
    return {
        "Model": info.name or info.path.stem,
        "File": info.path.name,
        "Quantization": info.quant,
        "Size": f"{format_bytes(info.file_size)} · {size_params}",
        "Context": f"{model.n_ctx:,} tokens{trained}",
        "Backend": backend,
    }
