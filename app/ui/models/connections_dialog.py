"""Model → Connections…: the saved OpenAI-compatible servers, a form to add or change one,
Test (its models and the round trip) and "Use this model".

The dialog only shows and asks: the remote controller saves, tests and connects, off the
GUI thread, and hands back what it found.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.inference.connections import PRIVACY_NOTE, Connection
from app.core.inference.remote_server import ServerFacts
from app.ui.widgets import named

_NAME_ROLE = Qt.ItemDataRole.UserRole
_ERROR_COLOUR = "#cf222e"


def facts_text(facts: ServerFacts) -> str:
    """ "3 models · a hearth server · round trip 12 ms"."""
    count = len(facts.models)
    return (
        f"{count} model{'s' if count != 1 else ''} · a {facts.kind} server · "
        f"round trip {facts.round_trip_ms:.0f} ms"
    )


class ConnectionsDialog(QDialog):
    """The saved servers and the form to add, test, remove and use one.

    Object names: connectionsDialog, connectionsPrivacyNote, connectionsList,
    connectionNameEdit, connectionUrlEdit, connectionKeyEdit, connectionCaEdit,
    connectionCaBrowseButton, newConnectionButton, saveConnectionButton,
    testConnectionButton, removeConnectionButton, connectionTestResult,
    connectionModelsList, useRemoteModelButton, connectionsCloseButton.

    Signals:
        saveRequested(str, str, str, str): Name, base URL, API key ("": keep the saved
            one) and CA bundle path ("": none).
        testRequested(str, str, str, str): The same fields, to test without saving.
        removeRequested(str): Forget this connection and its key.
        useRequested(str, str): Connection name and model: make it the chat's model.
    """

    saveRequested = Signal(str, str, str, str)
    testRequested = Signal(str, str, str, str)
    removeRequested = Signal(str)
    useRequested = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "connectionsDialog", "Connections to model servers")
        self.setWindowTitle("Connections")
        self.resize(760, 480)
        self._tested = ""  # the connection name the model list belongs to
        self._saved: set[str] = set()

        privacy = QLabel(
            f"<b>Privacy:</b> {html.escape(PRIVACY_NOTE)} Hearth connects only to the servers "
            "listed here, and only when you test one or chat with its model."
        )
        named(privacy, "connectionsPrivacyNote", "Privacy note")
        privacy.setWordWrap(True)

        self._list = QListWidget()
        named(self._list, "connectionsList", "Saved connections")
        self._list.currentItemChanged.connect(self._on_current)
        new = QPushButton("New")
        named(new, "newConnectionButton", "Start a new connection")
        new.clicked.connect(self.clear_form)
        self._remove = QPushButton("Remove")
        named(self._remove, "removeConnectionButton", "Remove this connection")
        self._remove.clicked.connect(self._on_remove)
        left_buttons = QHBoxLayout()
        left_buttons.addWidget(new)
        left_buttons.addWidget(self._remove)
        left = QVBoxLayout()
        left.addWidget(QLabel("Saved servers"))
        left.addWidget(self._list, 1)
        left.addLayout(left_buttons)

        self._name = QLineEdit()
        named(self._name, "connectionNameEdit", "Connection name")
        self._name.setPlaceholderText("gpu-box")
        self._url = QLineEdit()
        named(self._url, "connectionUrlEdit", "Base URL")
        self._url.setPlaceholderText("http://gpu-box:8000/v1")
        self._key = QLineEdit()
        named(self._key, "connectionKeyEdit", "API key")
        self._key.setEchoMode(QLineEdit.EchoMode.Password)
        self._key.setPlaceholderText("optional")
        self._ca = QLineEdit()
        named(self._ca, "connectionCaEdit", "CA bundle")
        self._ca.setPlaceholderText("optional: the server's CA certificate (.pem)")
        self._ca.setToolTip(
            "For a server whose certificate is signed by your own CA. Certificates are "
            "always verified."
        )
        browse = QPushButton("Browse…")
        named(browse, "connectionCaBrowseButton", "Choose a CA bundle")
        browse.clicked.connect(self._browse_ca)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self._ca, 1)
        ca_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("&Name:", self._name)
        form.addRow("Base &URL:", self._url)
        form.addRow("API &key:", self._key)
        ca_label = QLabel("&CA bundle:")
        ca_label.setBuddy(self._ca)
        form.addRow(ca_label, ca_row)

        self._save = QPushButton("Save")
        named(self._save, "saveConnectionButton", "Save this connection")
        self._save.clicked.connect(self._on_save)
        self._test = QPushButton("Test")
        named(self._test, "testConnectionButton", "Test this connection")
        self._test.setToolTip("List the server's models (/v1/models) and time the round trip")
        self._test.clicked.connect(self._on_test)
        form_buttons = QHBoxLayout()
        form_buttons.addStretch(1)
        form_buttons.addWidget(self._test)
        form_buttons.addWidget(self._save)

        self._result = QLabel("")
        named(self._result, "connectionTestResult", "Test result")
        self._result.setWordWrap(True)
        self._result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._models = QListWidget()
        named(self._models, "connectionModelsList", "The server's models")
        self._models.currentItemChanged.connect(self._update_buttons)
        self._models.itemDoubleClicked.connect(self._on_use)
        self._use = QPushButton("Use this model")
        named(self._use, "useRemoteModelButton", "Chat with this model")
        self._use.clicked.connect(self._on_use)
        use_row = QHBoxLayout()
        use_row.addStretch(1)
        use_row.addWidget(self._use)

        right = QVBoxLayout()
        right.addLayout(form)
        right.addLayout(form_buttons)
        right.addWidget(self._result)
        right.addWidget(self._models, 1)
        right.addLayout(use_row)

        columns = QHBoxLayout()
        columns.addLayout(left, 2)
        columns.addLayout(right, 3)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close_button = close.button(QDialogButtonBox.StandardButton.Close)
        named(close_button, "connectionsCloseButton", "Close")
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(privacy)
        layout.addLayout(columns, 1)
        layout.addWidget(close)
        for edit in (self._name, self._url):
            edit.textChanged.connect(self._update_buttons)
        self._update_buttons()

    # ----- what the controller shows -----

    def set_connections(self, connections: Sequence[Connection], key_storage: str) -> None:
        """The saved connections (the one named in the form stays selected)."""
        current = self._name.text().strip()
        self._saved = {c.name for c in connections}
        self._list.blockSignals(True)
        self._list.clear()
        for connection in connections:
            extras = " · key" if connection.has_key else ""
            item = QListWidgetItem(f"{connection.name}{extras}\n{connection.base_url}")
            item.setData(_NAME_ROLE, connection)
            item.setToolTip(connection.base_url)
            self._list.addItem(item)
            if connection.name == current:
                self._list.setCurrentItem(item)
        self._list.blockSignals(False)
        self._key.setToolTip(
            f"Optional. Kept in {key_storage}, never in the chat database or the log. "
            "Leave it empty to keep the key already saved."
        )
        self._update_buttons()

    def set_busy(self, text: str) -> None:
        """Something is under way (saving, testing)."""
        self._result.setStyleSheet("")
        self._result.setText(text)

    def show_error(self, text: str) -> None:
        """What went wrong, in words a person can act on."""
        self._result.setStyleSheet(f"color: {_ERROR_COLOUR}")
        self._result.setText(text)

    def show_facts(self, name: str, facts: ServerFacts) -> None:
        """A test's result: the models the server lists and the round trip."""
        self._tested = name
        self._result.setStyleSheet("")
        self._result.setText(f"{name}: {facts_text(facts)}")
        self._models.clear()
        for model in facts.models:
            context = f" · {model.n_ctx:,} tokens" if model.n_ctx else ""
            item = QListWidgetItem(f"{model.id}{context}")
            item.setData(_NAME_ROLE, model.id)
            self._models.addItem(item)
        if self._models.count():
            self._models.setCurrentRow(0)
        self._update_buttons()

    def select(self, name: str) -> bool:
        """Select a saved connection (its fields go into the form)."""
        for row in range(self._list.count()):
            item = self._list.item(row)
            connection = item.data(_NAME_ROLE)
            if isinstance(connection, Connection) and connection.name == name:
                self._list.setCurrentItem(item)
                return True
        return False

    def fill(self, name: str, url: str, key: str = "", ca_bundle: str = "") -> None:
        """Put values in the form (as a person would type them)."""
        self._name.setText(name)
        self._url.setText(url)
        self._key.setText(key)
        self._ca.setText(ca_bundle)

    @property
    def result_text(self) -> str:
        """The test result or error on show."""
        return self._result.text()

    @property
    def model_names(self) -> list[str]:
        """The models of the last test."""
        return [str(self._models.item(r).data(_NAME_ROLE)) for r in range(self._models.count())]

    # ----- the person's actions -----

    @Slot()
    def clear_form(self) -> None:
        """Empty the form for a new connection."""
        self._list.clearSelection()
        self._list.setCurrentRow(-1)
        self.fill("", "")
        self._models.clear()
        self._tested = ""
        self._result.setText("")
        self._name.setFocus()

    def _fields(self) -> tuple[str, str, str, str]:
        return (
            self._name.text().strip(),
            self._url.text().strip(),
            self._key.text(),
            self._ca.text().strip(),
        )

    @Slot()
    def _on_save(self) -> None:
        self.saveRequested.emit(*self._fields())
        self._key.clear()  # saved away: never kept on screen

    @Slot()
    def _on_test(self) -> None:
        self._models.clear()
        self._tested = ""
        self.testRequested.emit(*self._fields())

    @Slot()
    def _on_remove(self) -> None:
        item = self._list.currentItem()
        connection = item.data(_NAME_ROLE) if item is not None else None
        if isinstance(connection, Connection):
            self.removeRequested.emit(connection.name)

    @Slot()
    def _on_use(self) -> None:
        item = self._models.currentItem()
        if item is not None and self._tested in self._saved:
            self.useRequested.emit(self._tested, str(item.data(_NAME_ROLE)))

    @Slot()
    def _browse_ca(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "The server's CA certificate",
            str(Path.home()),
            "Certificates (*.pem *.crt);;All files (*)",
        )
        if path:
            self._ca.setText(path)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        connection = item.data(_NAME_ROLE) if item is not None else None
        if isinstance(connection, Connection):
            ca = str(connection.ca_bundle) if connection.ca_bundle else ""
            self.fill(connection.name, connection.base_url, "", ca)
            self._key.setPlaceholderText(
                "saved (leave empty to keep)" if connection.has_key else "optional"
            )
            if self._tested != connection.name:
                self._models.clear()
                self._result.setText("")
        self._update_buttons()

    @Slot()
    def _update_buttons(self, *_args: object) -> None:
        filled = bool(self._name.text().strip() and self._url.text().strip())
        self._save.setEnabled(filled)
        self._test.setEnabled(bool(self._url.text().strip()))
        self._remove.setEnabled(self._list.currentItem() is not None)
        usable = self._tested in self._saved
        self._use.setEnabled(usable and self._models.currentItem() is not None)
        self._use.setToolTip(
            f"Chat with this model on {self._tested}"
            if usable
            else "Save the connection and test it to chat with its models"
        )
