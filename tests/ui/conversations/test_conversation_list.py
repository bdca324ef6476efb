"""The conversation sidebar over a real store: list, select, rename, pin, delete + undo, search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLineEdit, QListView, QPushButton, QWidget
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from app.core.chats.conversation import Conversation
from app.core.chats.search import HIGHLIGHT_END, HIGHLIGHT_START, SearchHit
from app.core.chats.store import Store
from app.ui.conversations.conversation_list import ConversationList
from app.ui.conversations.conversation_models import (
    ConversationIdRole,
    ConversationListModel,
    MessageIdRole,
    PinnedRole,
    SearchResultsModel,
    snippet_html,
)
from tests.ui.pixels import assert_flat_scroll_bar

pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
]


class Recorder(QObject):
    """Collects the sidebar's signals (through @Slot methods)."""

    def __init__(self, sidebar: ConversationList) -> None:
        super().__init__()
        self.selected: list[int] = []
        self.hits: list[tuple[int, int]] = []
        self.deleted: list[int] = []
        self.restored: list[int] = []
        self.new_chats = 0
        sidebar.conversationSelected.connect(self.on_selected)
        sidebar.searchHitActivated.connect(self.on_hit)
        sidebar.conversationDeleted.connect(self.on_deleted)
        sidebar.conversationRestored.connect(self.on_restored)
        sidebar.newChatRequested.connect(self.on_new)

    @Slot(int)
    def on_selected(self, conversation_id: int) -> None:
        self.selected.append(conversation_id)

    @Slot(int, int)
    def on_hit(self, conversation_id: int, message_id: int) -> None:
        self.hits.append((conversation_id, message_id))

    @Slot(int)
    def on_deleted(self, conversation_id: int) -> None:
        self.deleted.append(conversation_id)

    @Slot(int)
    def on_restored(self, conversation_id: int) -> None:
        self.restored.append(conversation_id)

    @Slot()
    def on_new(self) -> None:
        self.new_chats += 1


class Clock:
    """A store clock that moves one second per call, so "most recent" is deterministic."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "hearth.sqlite3", clock=Clock())
    yield db
    db.close()


def chat(store: Store, title: str, *turns: str) -> Conversation:
    conversation = store.create_conversation(title)
    for text in turns:
        user = store.add_user_message(conversation.id, text)
        reply = store.start_reply(user.id, model="m.gguf", settings=store.default_settings())
        store.finish_reply(reply.id, "Here is what I know.", "complete")
    return store.conversation(conversation.id)


@pytest.fixture
def sidebar(qtbot: QtBot, store: Store) -> ConversationList:
    chat(store, "Lighthouse keepers", "tell me about the lamp")
    chat(store, "Sourdough", "how long does the starter rise")
    chat(store, "Tide tables", "when is high tide at the harbour")
    widget = ConversationList(store)
    qtbot.addWidget(widget)
    widget.resize(280, 500)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def titles(sidebar: ConversationList) -> list[str]:
    model = sidebar.model
    return [model.data(model.index(row)) for row in range(model.rowCount())]


def test_models_pass_the_model_tester(
    qtmodeltester: ModelTester, sidebar: ConversationList, store: Store
) -> None:
    qtmodeltester.check(sidebar.model, force_py=True)
    empty = ConversationListModel()
    qtmodeltester.check(empty, force_py=True)
    sidebar.set_search_text("tide")
    assert sidebar.results.rowCount() >= 1
    qtmodeltester.check(sidebar.results, force_py=True)
    qtmodeltester.check(SearchResultsModel(), force_py=True)


def test_lists_most_recent_first_and_pinned_on_top(sidebar: ConversationList, store: Store) -> None:
    assert titles(sidebar) == ["Tide tables", "Sourdough", "Lighthouse keepers"]
    keepers = store.list_conversations()[-1]
    sidebar.toggle_pin(keepers.id)
    assert titles(sidebar)[0] == "Lighthouse keepers"
    index = sidebar.model.index(0)
    assert index.data(PinnedRole) is True
    assert index.data(Qt.ItemDataRole.FontRole).bold()
    assert "pinned" in index.data(Qt.ItemDataRole.AccessibleTextRole)
    assert store.conversation(keepers.id).pinned
    sidebar.toggle_pin(keepers.id)
    assert titles(sidebar) == ["Tide tables", "Sourdough", "Lighthouse keepers"]


def test_clicking_and_arrow_keys_select_conversations(
    qtbot: QtBot, sidebar: ConversationList
) -> None:
    recorder = Recorder(sidebar)
    view = sidebar.view
    second = sidebar.model.index(1)
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(second).center()
    )
    assert recorder.selected == [second.data(ConversationIdRole)]
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert recorder.selected[-1] == sidebar.model.index(2).data(ConversationIdRole)
    assert sidebar.current_conversation_id == recorder.selected[-1]


def test_programmatic_selection_does_not_emit(sidebar: ConversationList, store: Store) -> None:
    recorder = Recorder(sidebar)
    target = store.list_conversations()[1].id
    sidebar.select_conversation(target)
    assert sidebar.view.currentIndex().data(ConversationIdRole) == target
    sidebar.refresh()
    assert sidebar.view.currentIndex().data(ConversationIdRole) == target
    sidebar.select_conversation(None)
    assert not sidebar.view.currentIndex().isValid()
    assert recorder.selected == []


def test_new_chat_button_asks_for_a_new_chat(qtbot: QtBot, sidebar: ConversationList) -> None:
    recorder = Recorder(sidebar)
    button = sidebar.findChild(QPushButton, "newChatButton")
    assert isinstance(button, QPushButton)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert recorder.new_chats == 1


def test_rename_in_place_with_f2(qtbot: QtBot, sidebar: ConversationList, store: Store) -> None:
    view = sidebar.view
    first_id = sidebar.model.index(0).data(ConversationIdRole)
    sidebar.select_conversation(first_id)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_F2)
    editor = view.findChild(QLineEdit)
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, "  Harbour   tides ")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: store.conversation(first_id).title == "Harbour tides")
    assert "Harbour tides" in titles(sidebar)


def test_rename_through_the_model_ignores_blank_titles(
    sidebar: ConversationList, store: Store
) -> None:
    index = sidebar.model.index(0)
    conversation_id = index.data(ConversationIdRole)
    assert not sidebar.model.setData(index, "   ")
    assert sidebar.model.setData(index, "Charts")
    assert store.conversation(conversation_id).title == "Charts"


def test_delete_then_undo_from_the_message_bar(
    qtbot: QtBot, sidebar: ConversationList, store: Store
) -> None:
    recorder = Recorder(sidebar)
    target = sidebar.model.index(1).data(ConversationIdRole)
    sidebar.select_conversation(target)
    sidebar.view.setFocus()
    qtbot.keyClick(sidebar.view, Qt.Key.Key_Delete)
    assert recorder.deleted == [target]
    assert "Sourdough" not in titles(sidebar)
    assert [c.id for c in store.list_conversations(deleted=True)] == [target]
    assert "Deleted “Sourdough”" in sidebar.message_bar_text
    undo = sidebar.findChild(QPushButton, "undoDeleteButton")
    assert isinstance(undo, QPushButton) and undo.isVisible()
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert recorder.restored == [target]
    assert recorder.selected[-1] == target
    assert "Sourdough" in titles(sidebar)
    assert not store.list_conversations(deleted=True)
    assert sidebar.message_bar_text == ""
    assert sidebar.current_conversation_id == target


def test_ctrl_z_in_the_list_undoes_a_delete_after_the_bar_is_gone(
    qtbot: QtBot, sidebar: ConversationList, store: Store
) -> None:
    target = sidebar.model.index(0).data(ConversationIdRole)
    sidebar.delete_conversation(target)
    sidebar.hide_message_bar()
    sidebar.view.setFocus()
    qtbot.keyClick(sidebar.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert target in [c.id for c in store.list_conversations()]


def test_search_shows_hits_with_highlighted_matches_and_opens_them(
    qtbot: QtBot, sidebar: ConversationList, store: Store
) -> None:
    recorder = Recorder(sidebar)
    sidebar.focus_search()
    field = sidebar.findChild(QLineEdit, "searchField")
    assert isinstance(field, QLineEdit) and field.hasFocus()
    qtbot.keyClicks(field, "harb")
    results = sidebar.findChild(QListView, "searchResultsView")
    assert isinstance(results, QListView)
    qtbot.waitUntil(results.isVisible)
    assert sidebar.results.rowCount() == 1
    hit_index = sidebar.results.index(0)
    html = hit_index.data(Qt.ItemDataRole.UserRole + 4)
    assert "<b><u>harbour</u></b>" in html and "Tide tables" in html
    assert "harbour" in hit_index.data(Qt.ItemDataRole.ToolTipRole)
    qtbot.keyClick(field, Qt.Key.Key_Return)
    tide = store.list_conversations()[0]
    assert recorder.hits == [(tide.id, hit_index.data(MessageIdRole))]
    assert sidebar.current_conversation_id == tide.id


def test_search_with_no_match_says_so_and_escape_clears(
    qtbot: QtBot, sidebar: ConversationList
) -> None:
    sidebar.set_search_text("zeppelin")
    label = sidebar.findChild(QWidget, "noResultsLabel")
    assert isinstance(label, QWidget) and label.isVisible()
    field = sidebar.findChild(QLineEdit, "searchField")
    assert isinstance(field, QLineEdit)
    field.setFocus()
    qtbot.keyClick(field, Qt.Key.Key_Escape)
    assert field.text() == ""
    assert sidebar.view.isVisible()


def test_search_results_are_reached_with_the_down_arrow(
    qtbot: QtBot, sidebar: ConversationList
) -> None:
    recorder = Recorder(sidebar)
    field = sidebar.findChild(QLineEdit, "searchField")
    assert isinstance(field, QLineEdit)
    field.setFocus()
    qtbot.keyClicks(field, "know")  # every reply says it
    qtbot.keyClick(field, Qt.Key.Key_Down)
    assert sidebar.results_view.hasFocus()
    qtbot.keyClick(sidebar.results_view, Qt.Key.Key_Down)
    qtbot.keyClick(sidebar.results_view, Qt.Key.Key_Return)
    assert len(recorder.hits) == 1
    assert recorder.hits[0][1] == sidebar.results.index(1).data(MessageIdRole)


def test_deleted_conversations_leave_the_search(sidebar: ConversationList, store: Store) -> None:
    sidebar.set_search_text("lamp")
    assert sidebar.results.rowCount() == 1
    keepers = sidebar.results.index(0).data(ConversationIdRole)
    sidebar.delete_conversation(keepers)
    assert sidebar.results.rowCount() == 0


def test_snippet_html_escapes_text_and_marks_matches() -> None:
    hit = SearchHit(
        1,
        "<script>",
        2,
        "assistant",
        f"a <b> {HIGHLIGHT_START}tide{HIGHLIGHT_END} & more",
    )
    html = snippet_html(hit)
    assert "&lt;script&gt;" in html and "&lt;b&gt;" in html and "&amp;" in html
    assert "<b><u>tide</u></b>" in html
    assert html.count("<u>") == 1


def test_every_interactive_widget_is_named(sidebar: ConversationList) -> None:
    for kind in (QPushButton, QLineEdit, QListView):
        for widget in sidebar.findChildren(kind):
            if widget.parent() is sidebar.view or widget.objectName() == "qt_spinbox_lineedit":
                continue
            assert widget.objectName() and widget.accessibleName(), widget
    actions = {a.objectName() for a in sidebar.view.actions()}
    assert {"renameConversationAction", "pinConversationAction", "deleteConversationAction"} <= (
        actions
    )


def test_a_long_list_scrolls_with_a_flat_handle_on_the_list_s_background(
    qtbot: QtBot, store: Store, sidebar: ConversationList
) -> None:
    for i in range(40):
        chat(store, f"Chat {i}", "hello")
    sidebar.refresh()
    view = sidebar.findChild(QListView, "conversationView")
    assert isinstance(view, QListView)
    assert_flat_scroll_bar(qtbot, view, QPalette.ColorRole.Base)
