"""Guard against Qt bindings that leak references to None/True/False.

PySide6 6.12.0 on Python 3.11 takes a reference from None on every void Qt call and from
True on every signal emit; after a few thousand of them the interpreter aborts
("Fatal Python error: bool_dealloc"). pyproject pins PySide6 below 6.12; this test fails
if an installed version has such a leak. It runs in a child process because the failure
mode is an abort.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QApplication, QLabel, QPlainTextEdit

app = QApplication([])

class Emitter(QObject):
    fired = Signal(int)

emitter, label, editor = Emitter(), QLabel(), QPlainTextEdit()
before = [sys.getrefcount(x) for x in (None, True, False)]
for i in range(5000):
    emitter.fired.emit(i)
    label.setText("x")
    label.setEnabled(i % 2 == 0)
    cursor = editor.textCursor()
    cursor.movePosition(QTextCursor.MoveOperation.End)
    cursor.insertText("a")
after = [sys.getrefcount(x) for x in (None, True, False)]
print(*[a - b for a, b in zip(after, before)])
"""


def test_qt_calls_do_not_leak_references_to_singletons() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    deltas = [int(x) for x in result.stdout.split()]
    # A leaking binding loses thousands here; a healthy one stays within a few.
    assert all(d > -100 for d in deltas), deltas
