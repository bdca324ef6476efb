"""The right-hand panel: the model in use and the sampler settings of the open chat.

Every sampler setting has a slider and an exact number field kept in step; presets
(built-in and the person's own) fill them in. The panel only shows and edits values:
`settingsChanged` fires on every change the person makes (never on `set_settings`), and the
window decides where the settings go (the chat's stored settings, the running reply's
`SettingsHolder`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.load_options import LoadedModel
from app.core.inference.sampler_costs import cost_notes
from app.core.inference.sampling import MAX_SEED, PRESETS, SamplingSettings
from app.ui.sampling.sampling_controls import (
    NUMBER_SPECS,
    NumberControl,
    describe_model,
    format_stop_strings,
    parse_stop_strings,
)
from app.ui.widgets import flat_scroll_bar
from app.ui.widgets import named as _named

log = logging.getLogger(__name__)

TEXT_DELAY_MS = 400
"""Stop strings and the system prompt are sent this long after typing pauses."""
CUSTOM = "Custom"
SAMPLER_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)
"""What a built-in preset sets; max tokens, seed and stop strings stay as they are."""


class SamplingPanel(QWidget):
    """The model in use and the sampler settings of the open chat, with presets.

    Built-in presets set the sampler fields only (max tokens, seed and stop strings stay);
    the person's own presets set everything they saved.

    Object names: samplingPanel, panelCollapseButton, modelInfoGroup, model*Value labels,
    loadOptionsButton, presetCombo, savePresetButton, deletePresetButton, <field>Slider /
    <field>Spin for temperature, topP, topK, minP, typicalP, repeatPenalty,
    presencePenalty, frequencyPenalty, maxTokens; seedRandomCheck, seedSpin, stopStringsEdit,
    systemPromptEdit, settingsScopeLabel, makeDefaultButton, useDefaultButton.

    Signals:
        settingsChanged(object): The new `SamplingSettings`, after every change the person
            makes (slider, field, preset, seed, stop strings).
        systemPromptChanged(str): The system prompt, once typing pauses.
        presetSaveRequested(str, object): Save the current settings under a name.
        presetDeleteRequested(str): Delete a saved preset.
        makeDefaultRequested(object, str): Make these settings and system prompt the
            defaults for new chats.
        useDefaultRequested(): Make the open chat follow the default settings again.
        collapseRequested(): The person asked to hide the panel.
        loadOptionsRequested(): The person asked to change how the model is loaded.
    """

    settingsChanged = Signal(object)
    systemPromptChanged = Signal(str)
    presetSaveRequested = Signal(str, object)
    presetDeleteRequested = Signal(str)
    makeDefaultRequested = Signal(object, str)
    useDefaultRequested = Signal()
    collapseRequested = Signal()
    loadOptionsRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "samplingPanel", "Model and sampling settings")
        self._settings = SamplingSettings()
        self._n_vocab = 0
        self._user_presets: dict[str, SamplingSettings] = {}
        self._controls: dict[str, NumberControl] = {}
        self._model_values: dict[str, QLabel] = {}
        self._build()
        self.set_model(None)
        self.set_settings(self._settings)

    # ----- construction -----

    def _build(self) -> None:
        self._text_timer = QTimer(self)
        self._text_timer.setObjectName("stopStringsTimer")
        self._text_timer.setSingleShot(True)
        self._text_timer.setInterval(TEXT_DELAY_MS)
        self._text_timer.timeout.connect(self._apply_stop_strings)
        self._prompt_timer = QTimer(self)
        self._prompt_timer.setObjectName("systemPromptTimer")
        self._prompt_timer.setSingleShot(True)
        self._prompt_timer.setInterval(TEXT_DELAY_MS)
        self._prompt_timer.timeout.connect(self._emit_system_prompt)
        title = QLabel("<b>Model and settings</b>")
        title.setObjectName("samplingPanelTitle")
        self._collapse = QToolButton()
        _named(self._collapse, "panelCollapseButton", "Hide the settings panel")
        self._collapse.setText("⟩")
        self._collapse.setToolTip("Hide this panel (Ctrl+Shift+B)")
        self._collapse.setAutoRaise(True)
        self._collapse.clicked.connect(self.collapseRequested)
        header = QHBoxLayout()
        header.addWidget(title, 1)
        header.addWidget(self._collapse)

        content = QWidget()
        content.setObjectName("samplingPanelContent")
        body = QVBoxLayout(content)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self._build_model_group())
        body.addWidget(self._build_sampling_group())
        body.addWidget(self._build_prompt_group())
        body.addStretch(1)

        scroll = QScrollArea()
        scroll.setObjectName("samplingPanelScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        flat_scroll_bar(scroll, "window")
        scroll.setWidget(content)
        # never narrower than the content: a clipped number field would hide its value
        scroll.setMinimumWidth(
            content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        )

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addWidget(scroll, 1)

    def _build_model_group(self) -> QGroupBox:
        group = QGroupBox("Model")
        _named(group, "modelInfoGroup", "Model in use")
        form = QFormLayout(group)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label in ("Model", "File", "Quantization", "Size", "Context", "Backend"):
            value = QLabel()
            key = label.replace(" ", "")
            _named(value, f"model{key}Value", label)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(f"{label}:", value)
            self._model_values[label] = value
        self._load_options = QPushButton("Load options…")
        _named(self._load_options, "loadOptionsButton", "Load options of this model")
        self._load_options.setToolTip(
            "GPU layers, context length, KV cache, threads: saved for this model"
        )
        self._load_options.clicked.connect(self.loadOptionsRequested)
        self._load_options.setEnabled(False)
        form.addRow(self._load_options)
        return group

    def _build_sampling_group(self) -> QGroupBox:
        group = QGroupBox("Sampling")
        group.setObjectName("samplingGroup")
        layout = QVBoxLayout(group)

        self._preset_combo = QComboBox()
        _named(self._preset_combo, "presetCombo", "Preset")
        self._preset_combo.setToolTip("Fill in the settings from a preset")
        self._preset_combo.activated.connect(self._on_preset_activated)
        preset_label = QLabel("&Preset")
        preset_label.setBuddy(self._preset_combo)
        self._save_preset = QPushButton("Save…")
        _named(self._save_preset, "savePresetButton", "Save these settings as a preset")
        self._save_preset.setToolTip("Save these settings as a preset")
        self._save_preset.clicked.connect(self._ask_preset_name)
        self._delete_preset = QPushButton("Delete")
        _named(self._delete_preset, "deletePresetButton", "Delete the selected preset")
        self._delete_preset.clicked.connect(self._on_delete_preset)
        preset_row = QHBoxLayout()
        preset_row.addWidget(preset_label)
        preset_row.addWidget(self._preset_combo, 1)
        layout.addLayout(preset_row)
        preset_buttons = QHBoxLayout()
        preset_buttons.addStretch(1)
        preset_buttons.addWidget(self._save_preset)
        preset_buttons.addWidget(self._delete_preset)
        layout.addLayout(preset_buttons)

        grid = QGridLayout()
        grid.setColumnStretch(0, 1)
        row = 0
        for spec in NUMBER_SPECS:
            control = NumberControl(spec, group)
            control.valueChanged.connect(self._on_number_changed)
            self._controls[spec.field] = control
            grid.addWidget(control.label, row, 0, 1, 2)
            grid.addWidget(control.spin, row, 1, Qt.AlignmentFlag.AlignRight)
            grid.addWidget(control.slider, row + 1, 0, 1, 2)
            grid.addWidget(control.cost, row + 2, 0, 1, 2)
            row += 3
        layout.addLayout(grid)

        self._seed_random = QCheckBox("Random seed")
        _named(self._seed_random, "seedRandomCheck", "Random seed")
        self._seed_random.setToolTip("Draw a new seed for every reply")
        self._seed_random.toggled.connect(self._on_seed_changed)
        self._seed = QDoubleSpinBox()
        _named(self._seed, "seedSpin", "Seed")
        self._seed.setDecimals(0)
        self._seed.setRange(0, MAX_SEED)
        self._seed.setKeyboardTracking(False)
        self._seed.setToolTip("The same seed and settings give the same reply")
        self._seed.setProperty("usualTip", self._seed.toolTip())
        self._seed_random.setProperty("usualTip", self._seed_random.toolTip())
        self._seed.valueChanged.connect(self._on_seed_changed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self._seed_random)
        seed_row.addWidget(self._seed, 1)
        layout.addLayout(seed_row)

        stop_label = QLabel("&Stop strings (one per line, \\n for a new line)")
        stop_label.setWordWrap(True)
        self._stop = QPlainTextEdit()
        _named(self._stop, "stopStringsEdit", "Stop strings")
        self._stop.setTabChangesFocus(True)
        self._stop.setPlaceholderText("e.g. ###")
        self._stop.setFixedHeight(self._stop.fontMetrics().lineSpacing() * 3 + 12)
        self._stop.textChanged.connect(self._text_timer.start)
        stop_label.setBuddy(self._stop)
        layout.addWidget(stop_label)
        layout.addWidget(self._stop)
        return group

    def _build_prompt_group(self) -> QGroupBox:
        group = QGroupBox("System prompt")
        group.setObjectName("systemPromptGroup")
        layout = QVBoxLayout(group)
        self._prompt = QPlainTextEdit()
        _named(self._prompt, "systemPromptEdit", "System prompt")
        self._prompt.setTabChangesFocus(True)
        self._prompt.setPlaceholderText("How the assistant should behave in this chat")
        self._prompt.setFixedHeight(self._prompt.fontMetrics().lineSpacing() * 5 + 12)
        self._prompt.textChanged.connect(self._prompt_timer.start)
        layout.addWidget(self._prompt)

        self._scope = QLabel()
        _named(self._scope, "settingsScopeLabel", "Where these settings apply")
        self._scope.setWordWrap(True)
        self._make_default = QPushButton("Make default")
        _named(self._make_default, "makeDefaultButton", "Make these the default settings")
        self._make_default.setToolTip("New chats start with these settings and system prompt")
        self._make_default.clicked.connect(self._on_make_default)
        self._use_default = QPushButton("Use default")
        _named(self._use_default, "useDefaultButton", "Use the default settings in this chat")
        self._use_default.setToolTip("This chat follows the default settings again")
        self._use_default.clicked.connect(self.useDefaultRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self._make_default)
        buttons.addWidget(self._use_default)
        layout.addWidget(self._scope)
        layout.addLayout(buttons)
        return group

    # ----- values in and out -----

    def settings(self) -> SamplingSettings:
        """The settings shown now."""
        return self._settings

    def set_settings(self, settings: SamplingSettings) -> None:
        """Show settings (e.g. another chat's) without emitting `settingsChanged`."""
        self._text_timer.stop()
        self._settings = settings
        for field, control in self._controls.items():
            value = getattr(settings, field)
            control.set_value(0 if value is None else value)
        with QSignalBlocker(self._seed_random), QSignalBlocker(self._seed):
            self._seed_random.setChecked(settings.seed is None)
            if settings.seed is not None:
                self._seed.setValue(settings.seed)
            self._seed.setEnabled(settings.seed is not None)
        with QSignalBlocker(self._stop):
            self._stop.setPlainText(format_stop_strings(settings.stop))
        self._show_preset()
        self._show_costs()

    def system_prompt(self) -> str:
        """The system prompt shown now."""
        return self._prompt.toPlainText()

    def set_system_prompt(self, text: str) -> None:
        """Show a system prompt without emitting `systemPromptChanged`."""
        self._prompt_timer.stop()
        with QSignalBlocker(self._prompt):
            self._prompt.setPlainText(text)

    @Slot()
    def _emit_system_prompt(self) -> None:
        self._prompt_timer.stop()
        self.systemPromptChanged.emit(self._prompt.toPlainText())

    def flush_pending(self) -> None:
        """Apply stop strings and the system prompt typed in the last moments."""
        if self._text_timer.isActive():
            self._apply_stop_strings()
        if self._prompt_timer.isActive():
            self._emit_system_prompt()

    def set_follows_default(self, follows: bool | None) -> None:
        """Say whether the open chat has its own settings (None: no chat open yet)."""
        if follows is None:
            text = "A new chat starts with these settings."
        elif follows:
            text = "This chat uses the default settings."
        else:
            text = "This chat has its own settings."
        self._scope.setText(text)
        self._use_default.setEnabled(follows is False)

    def set_user_presets(self, presets: Mapping[str, SamplingSettings]) -> None:
        """The person's saved presets, listed after the built-in ones."""
        self._user_presets = dict(presets)
        self._show_preset()

    def set_model(self, model: LoadedModel | None, placement: str | None = None) -> None:
        """Show the facts of the model in use (None: no model); `placement` is where it
        runs ("GPU 16/33 + CPU"), when known better than the model says."""
        facts = describe_model(model) if model is not None else {}
        if model is not None and placement:
            facts["Backend"] = placement
        for label, widget in self._model_values.items():
            widget.setText(facts.get(label, "—" if label != "Model" else "No model loaded"))
        if model is not None:
            widget = self._model_values["Model"]
            widget.setToolTip(str(model.info.path))
        self._n_vocab = model.info.n_vocab if model is not None else 0
        self._show_costs()

    def set_server_model(self, facts: Mapping[str, str]) -> None:
        """Show a server's model (its facts by row label) instead of a local one."""
        for label, widget in self._model_values.items():
            widget.setText(facts.get(label, "—"))
            widget.setToolTip("")
        self._n_vocab = 0
        self._show_costs()

    def set_unsupported(self, samplers: frozenset[str] | None, reason: str) -> None:
        """Disable the settings not in `samplers` (None: all enabled), each with `reason`."""
        for field, control in self._controls.items():
            control.set_unsupported("" if samplers is None or field in samplers else reason)
        for field, widgets in (("seed", (self._seed, self._seed_random)), ("stop", (self._stop,))):
            off = samplers is not None and field not in samplers
            for widget in widgets:
                widget.setEnabled(not off)
                widget.setToolTip(reason if off else widget.property("usualTip") or "")

    def _show_costs(self) -> None:
        """Beside each slow setting, what it costs per token on this model (measured)."""
        notes = cost_notes(self._settings, self._n_vocab) if self._n_vocab else ()
        shown: dict[str, str] = {}
        for note in notes:
            field = next((f for f in note.fields if f in self._controls), None)
            if field is not None:
                shown[field] = note.text
        for field, control in self._controls.items():
            control.cost.setText(shown.get(field, ""))
            control.cost.setVisible(field in shown)

    def set_load_options_enabled(self, enabled: bool) -> None:
        """Offer "Load options…" (when there is a model to set them for)."""
        self._load_options.setEnabled(enabled)

    def value_control(self, field: str) -> NumberControl:
        """The slider and field pair of a numeric setting (for tests and key handling)."""
        return self._controls[field]

    # ----- changes -----

    def _change(self, settings: SamplingSettings) -> None:
        if settings == self._settings:
            return
        self._settings = settings
        self._show_preset()
        self._show_costs()
        self.settingsChanged.emit(settings)

    @Slot(float)
    def _on_number_changed(self, _value: float) -> None:
        control = self.sender()
        if not isinstance(control, NumberControl):
            return
        field = control.spec.field
        value: float | int | None = control.value()
        if control.spec.is_int:
            value = round(control.value())
        if field == "max_tokens" and value == 0:
            value = None
        try:
            settings = self._settings.with_changes(**{field: value})
        except ValueError as exc:  # out of the core's range: show the valid value again
            log.info("rejected %s=%s: %s", field, value, exc)
            self.set_settings(self._settings)
            return
        self._change(settings)

    @Slot()
    def _on_seed_changed(self) -> None:
        random = self._seed_random.isChecked()
        self._seed.setEnabled(not random)
        self._change(self._settings.with_changes(seed=None if random else int(self._seed.value())))

    @Slot()
    def _apply_stop_strings(self) -> None:
        self._text_timer.stop()
        self._change(self._settings.with_changes(stop=parse_stop_strings(self._stop.toPlainText())))

    # ----- presets -----

    def _preset_names(self) -> list[str]:
        return [*PRESETS, *self._user_presets]

    def _matching_preset(self) -> str | None:
        current = self._settings
        for name, preset in self._user_presets.items():
            if preset == current:
                return name
        for name, preset in PRESETS.items():
            if all(getattr(preset, f) == getattr(current, f) for f in SAMPLER_FIELDS):
                return name
        return None

    def _show_preset(self) -> None:
        combo = self._preset_combo
        with QSignalBlocker(combo):
            combo.clear()
            combo.addItem(CUSTOM)
            model = combo.model()
            if isinstance(model, QStandardItemModel):
                item = model.item(0)
                if item is not None:
                    item.setEnabled(False)
            combo.addItems(list(PRESETS))
            if self._user_presets:
                combo.insertSeparator(combo.count())
                combo.addItems(list(self._user_presets))
            match = self._matching_preset()
            combo.setCurrentIndex(combo.findText(match) if match else 0)
        self._delete_preset.setEnabled(match in self._user_presets if match else False)

    @property
    def preset_name(self) -> str:
        """The preset the settings match, or "Custom"."""
        return self._preset_combo.currentText()

    def apply_preset(self, name: str) -> None:
        """Fill in a preset's settings (as if picked in the list)."""
        if name in self._user_presets:
            settings = self._user_presets[name]
        elif name in PRESETS:
            preset = PRESETS[name]
            settings = self._settings.with_changes(
                **{f: getattr(preset, f) for f in SAMPLER_FIELDS}
            )
        else:
            return
        self.set_settings(settings)
        self.settingsChanged.emit(settings)

    @Slot(int)
    def _on_preset_activated(self, index: int) -> None:
        name = self._preset_combo.itemText(index)
        if name and name != CUSTOM:
            self.apply_preset(name)

    @Slot()
    def _ask_preset_name(self) -> None:
        suggestion = self.preset_name if self.preset_name in self._user_presets else ""
        name, ok = QInputDialog.getText(
            self, "Save preset", "Name of the preset:", QLineEdit.EchoMode.Normal, suggestion
        )
        if ok and name.strip():
            self.presetSaveRequested.emit(name.strip(), self._settings)

    @Slot()
    def _on_delete_preset(self) -> None:
        name = self.preset_name
        if name in self._user_presets:
            self.presetDeleteRequested.emit(name)

    @Slot()
    def _on_make_default(self) -> None:
        self.flush_pending()
        self.makeDefaultRequested.emit(self._settings, self._prompt.toPlainText())
