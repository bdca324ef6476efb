"""The main window's menus, actions and shortcuts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QToolButton

from app.ui.controllers.chat_files import ChatFiles
from app.ui.controllers.models import ModelController
from app.ui.controllers.remote import RemoteController
from app.ui.controllers.storage import StorageController
from app.ui.widgets import named


class MenuHost(Protocol):
    """What the window itself does for its menus (the main window, structurally)."""

    def new_chat(self) -> None: ...
    def set_sidebar_visible(self, visible: bool) -> None: ...
    def set_panel_visible(self, visible: bool) -> None: ...
    def set_tokens_view(self, on: bool) -> None: ...
    def focus_search(self) -> None: ...
    def stop_reply(self) -> None: ...


@dataclass(frozen=True)
class Menus:
    """The actions the window enables, checks or triggers later."""

    export_chat: QAction
    load_options: QAction
    toggle_sidebar: QAction
    toggle_panel: QAction
    tokens: QAction
    serve: QAction
    stop: QShortcut


def _action(
    window: QMainWindow,
    text: str,
    name: str,
    slot: object,
    shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
) -> QAction:
    act = QAction(text, window)
    act.setObjectName(name)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    act.triggered.connect(slot)
    window.addAction(act)  # shortcuts work even where the menu bar is hidden
    return act


def build_menus(
    window: QMainWindow,
    slots: MenuHost,
    models: ModelController,
    files: ChatFiles,
    remote: RemoteController,
    storage: StorageController,
) -> Menus:
    """File, View, Model and Help menus, and Esc to stop a reply.

    Action names: newChatAction, openModelAction, importAction, exportChatAction,
    exportAllAction, storageAction, repairDatabaseAction, quitAction, toggleSidebarAction,
    toggleSettingsAction, tokensViewAction, searchAction, modelManagerAction,
    loadOptionsAction, connectionsAction, serverAction, aboutMachineAction; shortcut
    stopAction.
    """
    bar = window.menuBar()
    new_chat = _action(
        window, "&New chat", "newChatAction", slots.new_chat, QKeySequence.StandardKey.New
    )
    open_model = _action(
        window,
        "&Open model…",
        "openModelAction",
        models.open_model_dialog,
        QKeySequence.StandardKey.Open,
    )
    export_chat = _action(
        window, "&Export this chat…", "exportChatAction", files.export_chat_dialog, "Ctrl+E"
    )
    file_menu = bar.addMenu("&File")
    file_menu.setObjectName("fileMenu")
    file_menu.addActions([new_chat, open_model])
    file_menu.addSeparator()
    file_menu.addAction(_action(window, "&Import chats…", "importAction", files.import_dialog))
    file_menu.addAction(export_chat)
    file_menu.addAction(
        _action(
            window, "Export &all chats…", "exportAllAction", files.export_all_dialog, "Ctrl+Shift+E"
        )
    )
    file_menu.addSeparator()
    file_menu.addAction(_action(window, "&Storage…", "storageAction", storage.open_dialog))
    file_menu.addAction(
        _action(window, "&Repair database…", "repairDatabaseAction", storage.repair_dialog)
    )
    file_menu.addSeparator()
    file_menu.addAction(
        _action(window, "&Quit", "quitAction", window.close, QKeySequence.StandardKey.Quit)
    )

    toggle_sidebar = _action(
        window, "&Conversations", "toggleSidebarAction", slots.set_sidebar_visible, "Ctrl+B"
    )
    toggle_panel = _action(
        window,
        "&Model and settings",
        "toggleSettingsAction",
        slots.set_panel_visible,
        "Ctrl+Shift+B",
    )
    for toggle in (toggle_sidebar, toggle_panel):
        toggle.setCheckable(True)
        toggle.setChecked(True)
    view_menu = bar.addMenu("&View")
    view_menu.setObjectName("viewMenu")
    view_menu.addActions([toggle_sidebar, toggle_panel])
    tokens = _action(
        window, "Replies as &tokens", "tokensViewAction", slots.set_tokens_view, "Ctrl+Shift+T"
    )
    tokens.setCheckable(True)
    tokens.setToolTip("Draw replies as their tokens, tinted by the model's probability")
    view_menu.addAction(tokens)
    view_menu.addSeparator()
    view_menu.addAction(
        _action(window, "&Search chats", "searchAction", slots.focus_search, "Ctrl+K")
    )

    load_options = _action(
        window, "&Load options…", "loadOptionsAction", models.open_load_options, "Ctrl+Shift+L"
    )
    load_options.setEnabled(False)
    model_menu = bar.addMenu("&Model")
    model_menu.setObjectName("modelMenu")
    model_menu.addAction(
        _action(window, "&Models…", "modelManagerAction", models.open_model_manager, "Ctrl+Shift+M")
    )
    model_menu.addActions([open_model, load_options])
    connections = _action(window, "&Connections…", "connectionsAction", remote.open_connections)
    connections.setToolTip("Chat with models on other machines (OpenAI-compatible servers)")
    model_menu.addAction(connections)
    model_menu.addSeparator()
    serve = QAction("&Serve to other programs (OpenAI API)", window)
    serve.setObjectName("serverAction")
    serve.setCheckable(True)
    serve.setToolTip("An OpenAI-compatible API on 127.0.0.1:8080 for the model in use")
    model_menu.addAction(serve)

    help_menu = bar.addMenu("&Help")
    help_menu.setObjectName("helpMenu")
    help_menu.addAction(
        _action(window, "About this &machine…", "aboutMachineAction", models.open_machine_report)
    )
    for button in bar.findChildren(QToolButton):  # Qt's "more menus" button
        named(button, "menuBarExtensionButton", "More menus")

    stop = QShortcut(QKeySequence(Qt.Key.Key_Escape), window)
    stop.setObjectName("stopAction")
    stop.setContext(Qt.ShortcutContext.WindowShortcut)
    stop.activated.connect(slots.stop_reply)
    stop.setEnabled(False)
    return Menus(export_chat, load_options, toggle_sidebar, toggle_panel, tokens, serve, stop)
