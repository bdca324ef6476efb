"""The load options dialog: GPU layers (auto, manual, a CPU-only build), several GPUs, the
quantized-V-cache / flash attention dependency, inline errors and the memory preview.

GPUs are described to the dialog (a `MachineReport` with made-up devices); the model is
the real starter model's header.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.errors import InvalidSettingError
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.inference.load_options import LoadOptions
from app.core.machine.hardware import (
    DeviceInfo,
    MachineReport,
    gpu_offload_supported,
    machine_report,
)
from app.ui.models.load_options_dialog import LoadOptionsDialog, parse_tensor_split

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]

GiB = 2**30
OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)


@pytest.fixture(scope="module")
def info(starter_model: Path) -> GGUFInfo:
    return read_gguf_info(starter_model)


@pytest.fixture(scope="module")
def this_machine() -> MachineReport:
    return machine_report()


def with_gpus(report: MachineReport, *free_gib: float) -> MachineReport:
    gpus = tuple(
        DeviceInfo(f"CUDA{i}", f"Test GPU {i}", "GPU", "CUDA", int(f * GiB), 8 * GiB)
        for i, f in enumerate(free_gib)
    )
    return dataclasses.replace(report, devices=gpus + report.devices, gpu_offload=True)


def cpu_only(report: MachineReport) -> MachineReport:
    cpus = tuple(d for d in report.devices if not d.is_gpu)
    return dataclasses.replace(report, devices=cpus, gpu_offload=False)


def make(
    qtbot: QtBot, info: GGUFInfo, report: MachineReport, options: LoadOptions = OPTIONS
) -> LoadOptionsDialog:
    dialog = LoadOptionsDialog(info, options, report)
    qtbot.addWidget(dialog)
    return dialog


def find(dialog: QWidget, kind: type[QWidget], name: str) -> QWidget:
    widget = dialog.findChild(kind, name)
    assert isinstance(widget, kind), name
    return widget


def combo(dialog: QWidget, name: str) -> QComboBox:
    widget = find(dialog, QComboBox, name)
    assert isinstance(widget, QComboBox)
    return widget


def choose(box: QComboBox, value: str) -> None:
    box.setCurrentIndex(box.findData(value))


def item_enabled(box: QComboBox, value: str) -> bool:
    model = box.model()
    assert isinstance(model, QStandardItemModel)
    return model.item(box.findData(value)).isEnabled()


def text_of(dialog: QWidget, name: str) -> str:
    label = find(dialog, QLabel, name)
    assert isinstance(label, QLabel)
    return label.text()


def test_shows_the_options_given_and_changes_nothing_untouched(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    given = LoadOptions(n_ctx=2048, n_threads=1, type_k="q4_0", use_mlock=True, n_batch=256)
    dialog = make(qtbot, info, this_machine, given)
    assert find(dialog, QSpinBox, "contextSpin").value() == 2048  # type: ignore[attr-defined]
    assert combo(dialog, "kvTypeKCombo").currentData() == "q4_0"
    assert find(dialog, QCheckBox, "mlockCheck").isChecked()  # type: ignore[attr-defined]
    assert dialog.options() == given  # batch sizes, not shown, are kept
    assert dialog.ok_button.isEnabled()


def test_the_layers_slider_is_disabled_on_a_cpu_only_build_with_the_reason(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, cpu_only(this_machine))
    slider = find(dialog, QSlider, "gpuLayersSlider")
    assert isinstance(slider, QSlider)
    assert slider.maximum() == info.n_layer + 1  # llama.cpp counts the output layer
    assert not slider.isEnabled()
    assert not find(dialog, QSpinBox, "gpuLayersSpin").isEnabled()
    assert not find(dialog, QCheckBox, "gpuAutoCheck").isEnabled()
    note = text_of(dialog, "gpuNoteLabel")
    assert "cannot use a GPU" in note and "About this machine" in note
    preview = text_of(dialog, "memoryPreviewLabel")
    assert "RAM" in preview and "every layer on the CPU" in preview
    assert dialog.findChild(QComboBox, "mainGpuCombo") is None


def test_this_machines_build_decides_whether_the_slider_works(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, this_machine, dataclasses.replace(OPTIONS, n_gpu_layers=5))
    manual = find(dialog, QSlider, "gpuLayersSlider")
    assert manual.isEnabled() is gpu_offload_supported()


def test_a_quantized_v_cache_turns_flash_attention_on_and_forbids_off(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, this_machine, dataclasses.replace(OPTIONS, flash_attn="off"))
    flash, v = combo(dialog, "flashAttnCombo"), combo(dialog, "kvTypeVCombo")
    note = find(dialog, QLabel, "flashNoteLabel")
    assert flash.currentData() == "off" and item_enabled(flash, "off")
    assert not note.isVisibleTo(dialog)

    choose(v, "q8_0")
    assert flash.currentData() == "on"
    assert not item_enabled(flash, "off")
    assert note.isVisibleTo(dialog) and "q8_0" in text_of(dialog, "flashNoteLabel")
    options = dialog.options()
    assert options is not None and (options.type_v, options.flash_attn) == ("q8_0", "on")

    choose(flash, "auto")  # auto stays allowed: llama.cpp turns it on for a quantized V
    choose(v, "q4_0")
    assert flash.currentData() == "auto"
    choose(v, "f16")
    assert item_enabled(flash, "off") and not note.isVisibleTo(dialog)
    choose(flash, "off")
    options = dialog.options()
    assert options is not None and (options.type_v, options.flash_attn) == ("f16", "off")
    choose(combo(dialog, "kvTypeKCombo"), "q4_0")  # a quantized K alone needs nothing
    assert flash.currentData() == "off"


def test_saved_quantized_v_with_auto_flash_attention_stays_as_saved(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    saved = dataclasses.replace(OPTIONS, type_v="q8_0", flash_attn="auto")
    dialog = make(qtbot, info, this_machine, saved)
    assert dialog.options() == saved
    assert not item_enabled(combo(dialog, "flashAttnCombo"), "off")


def test_auto_plans_the_layers_from_free_vram(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, with_gpus(this_machine, 6), LoadOptions(n_ctx=1024))
    auto = find(dialog, QCheckBox, "gpuAutoCheck")
    spin = find(dialog, QSpinBox, "gpuLayersSpin")
    assert isinstance(auto, QCheckBox) and isinstance(spin, QSpinBox)
    assert auto.isEnabled() and auto.isChecked()
    assert not spin.isEnabled()
    assert spin.value() == info.n_layer + 1  # a 135M model fits in 6 GiB
    assert "fit on the GPU" in text_of(dialog, "gpuNoteLabel")
    assert "of GPU memory" in text_of(dialog, "memoryPreviewLabel")
    options = dialog.options()
    assert options is not None and options.n_gpu_layers is None


def test_manual_layers_preview_their_memory_live(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, with_gpus(this_machine, 6), LoadOptions(n_ctx=1024))
    auto = find(dialog, QCheckBox, "gpuAutoCheck")
    slider = find(dialog, QSlider, "gpuLayersSlider")
    spin = find(dialog, QSpinBox, "gpuLayersSpin")
    assert isinstance(auto, QCheckBox) and isinstance(slider, QSlider)
    assert isinstance(spin, QSpinBox)
    auto.setChecked(False)
    assert slider.isEnabled()
    slider.setValue(10)
    assert spin.value() == 10
    plan = dialog.plan
    assert plan is not None and plan.n_gpu_layers == 10
    assert f"10 of {info.n_layer + 1} layers on the GPU" in text_of(dialog, "memoryPreviewLabel")
    ram_at_10 = plan.expected_ram
    spin.setValue(0)
    assert slider.value() == 0
    assert dialog.plan is not None and dialog.plan.expected_ram > ram_at_10
    assert "every layer on the CPU" in text_of(dialog, "memoryPreviewLabel")
    find(dialog, QSpinBox, "contextSpin").setValue(8192)  # type: ignore[attr-defined]
    assert dialog.plan is not None and dialog.plan.expected_ram > ram_at_10
    options = dialog.options()
    assert options is not None and (options.n_gpu_layers, options.n_ctx) == (0, 8192)


def test_too_many_layers_for_the_free_memory_are_flagged(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    tiny_gpu = with_gpus(this_machine, 0.01)
    dialog = make(qtbot, info, tiny_gpu, dataclasses.replace(OPTIONS, n_gpu_layers=-1))
    assert "retry with fewer layers" in text_of(dialog, "gpuNoteLabel")


def test_several_gpus_offer_a_main_gpu_and_a_tensor_split_with_inline_errors(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    options = dataclasses.replace(OPTIONS, n_gpu_layers=20)
    dialog = make(qtbot, info, with_gpus(this_machine, 6, 2), options)
    main = combo(dialog, "mainGpuCombo")
    split = find(dialog, QLineEdit, "tensorSplitEdit")
    error = find(dialog, QLabel, "loadOptionsErrorLabel")
    assert isinstance(split, QLineEdit)
    assert main.count() == 2 and "Test GPU 1" in main.itemText(1)
    main.setCurrentIndex(1)
    plan = dialog.plan
    assert plan is not None and len(plan.layers_per_device) == 2  # split by free memory

    split.setText("3, x")
    assert not dialog.ok_button.isEnabled()
    assert error.isVisibleTo(dialog) and "one number per GPU" in dialog.error_text
    assert dialog.options() is None
    split.setText("-1, 2")
    assert "0 or more" in dialog.error_text and not dialog.ok_button.isEnabled()
    split.setText("1, 2, 3")
    assert "3 shares but there are 2 GPUs" in dialog.error_text

    split.setText("3 1")
    assert dialog.error_text == "" and not error.isVisibleTo(dialog)
    assert dialog.ok_button.isEnabled()
    chosen = dialog.options()
    assert chosen is not None
    assert (chosen.main_gpu, chosen.tensor_split) == (1, (3.0, 1.0))
    plan = dialog.plan
    assert plan is not None and plan.layers_per_device[0] > plan.layers_per_device[1]


def test_defaults_fill_in_hearths_defaults(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, this_machine, dataclasses.replace(OPTIONS, type_k="q8_0"))
    button = find(dialog, QPushButton, "loadOptionsDefaultsButton")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert dialog.options() == LoadOptions()


def test_tensor_split_text() -> None:
    assert parse_tensor_split("", 2) == ()
    assert parse_tensor_split(" 0.6 / 0.4 ", 2) == (0.6, 0.4)
    with pytest.raises(InvalidSettingError):
        parse_tensor_split("a,b", 2)


def test_every_interactive_widget_is_named(
    qtbot: QtBot, info: GGUFInfo, this_machine: MachineReport
) -> None:
    dialog = make(qtbot, info, with_gpus(this_machine, 6, 2))
    for kind in (QAbstractButton, QAbstractSpinBox, QComboBox, QSlider, QLineEdit):
        for widget in dialog.findChildren(kind):
            if widget.objectName().startswith("qt_"):
                continue
            assert widget.objectName() and widget.accessibleName(), widget
