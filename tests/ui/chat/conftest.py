"""Fixtures for the chat widgets' tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from app.ui.chat.chat_view import ChatView


@pytest.fixture
def view(qtbot: QtBot) -> Iterator[ChatView]:
    """A chat view shown at 800x600 (offscreen)."""
    widget = ChatView()
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
