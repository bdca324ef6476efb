"""Small helpers every widget module shares."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def named(widget: QWidget, object_name: str, accessible_name: str) -> None:
    """Give a widget its object name (tests and style sheets find it by this) and the name
    screen readers say."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible_name)
