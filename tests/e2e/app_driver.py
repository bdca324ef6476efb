"""Run the real app (the `hearth` entry point) in this process and drive it like a person.

    python -m tests.e2e.app_driver [--send TEXT] [--mark-shown] [--close-after-shown]
                                   [--report-settled] -- HEARTH_ARGS...

The app itself has no test hooks: this script creates the `QApplication` first (the app
reuses it), watches for the main window with an application event filter, then acts on
the real widgets: types `--send` into the composer and presses Enter once the model is
loaded; prints `WINDOW_SHOWN <seconds since start>` on the first frame after the window
is shown (`--mark-shown`), and closes it then (`--close-after-shown`); prints `SETTLED
<objects frozen> <objects tracked>` and closes the window once the app has frozen its
start-up heap, or after 60 s (`--report-settled`; see `app.ui.gui_gc`). Everything after
`--` goes to `app.cli.main`, as on the command line.
"""

from __future__ import annotations

import argparse
import sys
import time

_STARTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    hearth_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, hearth_args = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--send", help="type this into the composer once the model loads")
    parser.add_argument("--mark-shown", action="store_true")
    parser.add_argument("--close-after-shown", action="store_true")
    parser.add_argument("--report-settled", action="store_true")
    options = parser.parse_args(args)

    import gc

    from PySide6.QtCore import QEvent, QObject, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication, QPlainTextEdit, QTextEdit

    from app.cli import main as hearth_main
    from app.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])

    class Driver(QObject):
        """Finds the main window, then does what the options ask."""

        def __init__(self) -> None:
            super().__init__()
            self.window: MainWindow | None = None
            self.sent = False
            self.poll = QTimer(self)
            self.poll.setInterval(50)
            self.poll.timeout.connect(self.tick)
            self.settled = QTimer(self)
            self.settled.setInterval(50)
            self.settled.timeout.connect(self.report_settled)

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if (
                self.window is None
                and isinstance(watched, MainWindow)
                and event.type() == QEvent.Type.Show
            ):
                self.window = watched
                QTimer.singleShot(0, self.on_shown)  # after the first frame's events
                if options.send:
                    self.poll.start()
                if options.report_settled:
                    self.settled.start()
            return False

        def on_shown(self) -> None:
            if options.mark_shown:
                print(f"WINDOW_SHOWN {time.perf_counter() - _STARTED:.4f}", flush=True)
            if options.close_after_shown and self.window is not None:
                self.window.close()

        def report_settled(self) -> None:
            if self.window is None:
                return
            if gc.get_freeze_count() == 0 and time.perf_counter() - _STARTED < 60:
                return
            self.settled.stop()
            print(f"SETTLED {gc.get_freeze_count()} {len(gc.get_objects())}", flush=True)
            self.window.close()

        def tick(self) -> None:
            window = self.window
            if window is None or self.sent or window.model is None or window.is_loading:
                return
            composer = window.composer
            field = composer.findChild(QPlainTextEdit) or composer.findChild(QTextEdit)
            if field is None:
                return
            self.sent = True
            self.poll.stop()
            field.setFocus()
            QTest.keyClicks(field, options.send)
            QTest.keyClick(field, Qt.Key.Key_Return)
            print("SENT", flush=True)

    driver = Driver()
    app.installEventFilter(driver)
    return int(hearth_main(hearth_args))


if __name__ == "__main__":
    sys.exit(main())
