"""The sampling panel: sliders and exact fields in step, presets, seed, stop strings, model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.gguf_file import read_gguf_info
from app.core.inference.load_options import LoadedModel
from app.core.inference.sampling import PRESETS, SamplingSettings
from app.ui.sampling.sampling_controls import (
    describe_model,
    format_stop_strings,
    parse_stop_strings,
)
from app.ui.sampling.sampling_panel import SamplingPanel
from tests.ui.pixels import assert_flat_scroll_bar

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


class Recorder(QObject):
    """Collects the panel's signals (through @Slot methods)."""

    def __init__(self, panel: SamplingPanel) -> None:
        super().__init__()
        self.settings: list[SamplingSettings] = []
        self.prompts: list[str] = []
        self.saved: list[tuple[str, SamplingSettings]] = []
        self.deleted: list[str] = []
        self.defaults: list[tuple[SamplingSettings, str]] = []
        self.use_default = 0
        self.collapse = 0
        panel.settingsChanged.connect(self.on_settings)
        panel.systemPromptChanged.connect(self.on_prompt)
        panel.presetSaveRequested.connect(self.on_save)
        panel.presetDeleteRequested.connect(self.on_delete)
        panel.makeDefaultRequested.connect(self.on_default)
        panel.useDefaultRequested.connect(self.on_use_default)
        panel.collapseRequested.connect(self.on_collapse)

    @Slot(object)
    def on_settings(self, settings: object) -> None:
        assert isinstance(settings, SamplingSettings)
        self.settings.append(settings)

    @Slot(str)
    def on_prompt(self, text: str) -> None:
        self.prompts.append(text)

    @Slot(str, object)
    def on_save(self, name: str, settings: object) -> None:
        assert isinstance(settings, SamplingSettings)
        self.saved.append((name, settings))

    @Slot(str)
    def on_delete(self, name: str) -> None:
        self.deleted.append(name)

    @Slot(object, str)
    def on_default(self, settings: object, prompt: str) -> None:
        assert isinstance(settings, SamplingSettings)
        self.defaults.append((settings, prompt))

    @Slot()
    def on_use_default(self) -> None:
        self.use_default += 1

    @Slot()
    def on_collapse(self) -> None:
        self.collapse += 1


@pytest.fixture
def panel(qtbot: QtBot) -> SamplingPanel:
    widget = SamplingPanel()
    qtbot.addWidget(widget)
    widget.resize(320, 900)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def find(panel: SamplingPanel, kind: type[QWidget], name: str) -> QWidget:
    widget = panel.findChild(kind, name)
    assert isinstance(widget, kind), name
    return widget


def spin(panel: SamplingPanel, name: str) -> QDoubleSpinBox:
    widget = find(panel, QDoubleSpinBox, name)
    assert isinstance(widget, QDoubleSpinBox)
    return widget


def slider(panel: SamplingPanel, name: str) -> QSlider:
    widget = find(panel, QSlider, name)
    assert isinstance(widget, QSlider)
    return widget


def type_value(qtbot: QtBot, box: QDoubleSpinBox, text: str) -> None:
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_shows_the_settings_it_is_given_without_emitting(panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    settings = SamplingSettings(
        temperature=0.35, top_k=12, top_p=0.8, min_p=0.1, max_tokens=None, seed=77
    )
    panel.set_settings(settings)
    assert spin(panel, "temperatureSpin").value() == pytest.approx(0.35)
    assert slider(panel, "temperatureSlider").value() == 35
    assert spin(panel, "topKSpin").value() == 12
    assert spin(panel, "maxTokensSpin").text() == "No limit"
    assert spin(panel, "seedSpin").value() == 77
    seed_random = find(panel, QCheckBox, "seedRandomCheck")
    assert isinstance(seed_random, QCheckBox) and not seed_random.isChecked()
    assert panel.settings() == settings
    assert recorder.settings == []


def test_moving_a_slider_updates_the_field_and_emits(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    temperature = slider(panel, "temperatureSlider")
    temperature.setFocus()
    for _ in range(5):
        qtbot.keyClick(temperature, Qt.Key.Key_Right)
    assert spin(panel, "temperatureSpin").value() == pytest.approx(0.85)
    assert [s.temperature for s in recorder.settings] == pytest.approx(
        [0.81, 0.82, 0.83, 0.84, 0.85]
    )
    assert panel.settings().temperature == pytest.approx(0.85)


def test_typing_an_exact_value_moves_the_slider(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    box = spin(panel, "topPSpin")
    type_value(qtbot, box, "0.42")
    assert slider(panel, "topPSlider").value() == 42
    assert recorder.settings[-1].top_p == pytest.approx(0.42)
    repeat = spin(panel, "repeatPenaltySpin")
    type_value(qtbot, repeat, "3.5")  # beyond the slider's reach, within the field's
    assert recorder.settings[-1].repeat_penalty == pytest.approx(3.5)
    assert (
        slider(panel, "repeatPenaltySlider").value()
        == slider(panel, "repeatPenaltySlider").maximum()
    )
    assert spin(panel, "repeatPenaltySpin").value() == pytest.approx(3.5)


def test_temperature_spans_zero_to_two(panel: SamplingPanel) -> None:
    box = spin(panel, "temperatureSpin")
    assert (box.minimum(), box.maximum()) == (0.0, 2.0)
    box.setValue(2.0)
    assert panel.settings().temperature == 2.0
    box.setValue(0.0)
    assert panel.settings().is_greedy


def test_every_numeric_setting_has_a_slider_and_a_field(panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    expected = {
        "temperature": 1.5,
        "top_p": 0.5,
        "top_k": 7,
        "min_p": 0.2,
        "typical_p": 0.9,
        "repeat_penalty": 1.3,
        "presence_penalty": -0.5,
        "frequency_penalty": 0.75,
        "max_tokens": 64,
    }
    for field, value in expected.items():
        control = panel.value_control(field)
        assert control.slider.accessibleName() and control.spin.accessibleName()
        control.spin.setValue(value)
    final = recorder.settings[-1]
    for field, value in expected.items():
        assert getattr(final, field) == pytest.approx(value), field
    assert isinstance(final.top_k, int) and isinstance(final.max_tokens, int)


def test_zero_max_tokens_means_no_limit_and_zero_top_k_is_off(panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    spin(panel, "maxTokensSpin").setValue(0)
    assert recorder.settings[-1].max_tokens is None
    spin(panel, "topKSpin").setValue(0)
    assert spin(panel, "topKSpin").text() == "Off"
    assert recorder.settings[-1].top_k == 0


def test_seed_random_or_fixed(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    check = find(panel, QCheckBox, "seedRandomCheck")
    assert isinstance(check, QCheckBox) and check.isChecked()
    seed = spin(panel, "seedSpin")
    assert not seed.isEnabled()
    qtbot.mouseClick(check, Qt.MouseButton.LeftButton)
    assert seed.isEnabled()
    type_value(qtbot, seed, "4000000000")  # above a 32-bit int: seeds go to 2**32 - 2
    assert recorder.settings[-1].seed == 4_000_000_000
    qtbot.mouseClick(check, Qt.MouseButton.LeftButton)
    assert recorder.settings[-1].seed is None


def test_stop_strings_one_per_line_with_escapes(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    edit = find(panel, QPlainTextEdit, "stopStringsEdit")
    assert isinstance(edit, QPlainTextEdit)
    edit.setFocus()
    qtbot.keyClicks(edit, "###")
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.keyClicks(edit, "\\n\\nUser:")
    qtbot.waitUntil(lambda: bool(recorder.settings))
    assert recorder.settings[-1].stop == ("###", "\n\nUser:")
    assert len(recorder.settings) == 1  # debounced: one change for the whole typing
    assert parse_stop_strings(format_stop_strings(("a\\b", "\t", "x\ny"))) == (
        "a\\b",
        "\t",
        "x\ny",
    )


def test_built_in_presets_set_the_samplers_and_keep_length_seed_and_stops(
    qtbot: QtBot, panel: SamplingPanel
) -> None:
    recorder = Recorder(panel)
    panel.set_settings(SamplingSettings(max_tokens=99, seed=5, stop=("END",)))
    combo = find(panel, QComboBox, "presetCombo")
    assert isinstance(combo, QComboBox)
    assert combo.currentText() == "Balanced"
    combo.setCurrentIndex(combo.findText("Creative"))
    combo.activated.emit(combo.currentIndex())
    result = recorder.settings[-1]
    creative = PRESETS["Creative"]
    assert result.temperature == creative.temperature and result.top_k == creative.top_k
    assert (result.max_tokens, result.seed, result.stop) == (99, 5, ("END",))
    assert spin(panel, "temperatureSpin").value() == pytest.approx(creative.temperature)
    spin(panel, "temperatureSpin").setValue(0.33)
    assert panel.preset_name == "Custom"


def test_user_presets_save_apply_and_delete(
    qtbot: QtBot, panel: SamplingPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(panel)
    mine = SamplingSettings(temperature=0.55, max_tokens=300, stop=("Q:",))
    panel.set_settings(mine)
    monkeypatch.setattr(
        QInputDialog, "getText", staticmethod(lambda *a, **k: ("  Storyteller ", True))
    )
    save = find(panel, QPushButton, "savePresetButton")
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    assert recorder.saved == [("Storyteller", mine)]

    panel.set_user_presets({"Storyteller": mine})
    assert panel.preset_name == "Storyteller"
    delete = find(panel, QPushButton, "deletePresetButton")
    assert delete.isEnabled()
    panel.apply_preset("Precise")
    assert not delete.isEnabled()
    panel.apply_preset("Storyteller")
    assert recorder.settings[-1] == mine  # a saved preset brings back everything it saved
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    assert recorder.deleted == ["Storyteller"]


def test_system_prompt_is_sent_once_typing_pauses(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    edit = find(panel, QPlainTextEdit, "systemPromptEdit")
    edit.setFocus()
    qtbot.keyClicks(edit, "You are terse.")
    qtbot.waitUntil(lambda: recorder.prompts == ["You are terse."])
    panel.set_system_prompt("Other")
    assert panel.system_prompt() == "Other"
    assert recorder.prompts == ["You are terse."]
    qtbot.keyClick(edit, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(edit, "!")
    panel.flush_pending()
    assert recorder.prompts[-1] == "Other!"


def test_default_buttons_and_collapse(qtbot: QtBot, panel: SamplingPanel) -> None:
    recorder = Recorder(panel)
    panel.set_system_prompt("Be kind.")
    panel.set_follows_default(False)
    scope = find(panel, QLabel, "settingsScopeLabel")
    assert isinstance(scope, QLabel) and "own settings" in scope.text()
    qtbot.mouseClick(find(panel, QPushButton, "makeDefaultButton"), Qt.MouseButton.LeftButton)
    assert recorder.defaults == [(panel.settings(), "Be kind.")]
    use_default = find(panel, QPushButton, "useDefaultButton")
    qtbot.mouseClick(use_default, Qt.MouseButton.LeftButton)
    assert recorder.use_default == 1
    panel.set_follows_default(True)
    assert not use_default.isEnabled()
    qtbot.mouseClick(find(panel, QWidget, "panelCollapseButton"), Qt.MouseButton.LeftButton)
    assert recorder.collapse == 1


def test_model_facts(panel: SamplingPanel, starter_model: Path) -> None:
    info = read_gguf_info(starter_model)
    model = LoadedModel(
        info=info,
        n_ctx=1024,
        n_gpu_layers=0,
        n_threads=2,
        gpu_offload_supported=False,
        template_is_fallback=False,
        build="test",
    )
    panel.set_model(model)
    value = find(panel, QLabel, "modelQuantizationValue")
    assert isinstance(value, QLabel) and value.text() == "Q4_1"
    context = find(panel, QLabel, "modelContextValue")
    assert isinstance(context, QLabel) and context.text().startswith("1,024 tokens")
    backend = find(panel, QLabel, "modelBackendValue")
    assert isinstance(backend, QLabel) and backend.text() == "CPU, 2 threads"
    facts = describe_model(model)
    assert "MiB" in facts["Size"] and "M parameters" in facts["Size"]
    gpu = describe_model(
        LoadedModel(
            info, 1024, -1, 2, gpu_offload_supported=True, template_is_fallback=False, build="x"
        )
    )
    assert gpu["Backend"].startswith("GPU")
    panel.set_model(None)
    name = find(panel, QLabel, "modelModelValue")
    assert isinstance(name, QLabel) and name.text() == "No model loaded"


def test_every_interactive_widget_is_named(panel: SamplingPanel) -> None:
    for kind in (QAbstractSpinBox, QSlider, QCheckBox, QComboBox, QPlainTextEdit, QPushButton):
        for widget in panel.findChildren(kind):
            assert widget.objectName() and widget.accessibleName(), widget


def test_a_short_panel_scrolls_with_a_flat_handle_on_the_panel_s_background(
    qtbot: QtBot, panel: SamplingPanel
) -> None:
    panel.resize(320, 300)
    scroll = panel.findChild(QScrollArea, "samplingPanelScroll")
    assert isinstance(scroll, QScrollArea)
    assert_flat_scroll_bar(qtbot, scroll, QPalette.ColorRole.Window)
