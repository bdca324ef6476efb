"""App benchmarks: start to window shown, and opening a 500-message chat in the full window.

    python -m tests.bench.app_startup [--rounds N] [--messages N]

Start-up: the real app (`tests/e2e/app_driver.py` around the `hearth` entry point) in a
fresh process, offscreen, until the first frame after its window is shown (the driver
prints a marker), vs a bare `QApplication` + `QMainWindow` doing the same: medians of
`--rounds` runs each, alternated. Both are timed from process start by the parent.

Opening a chat: `MainWindow.open_conversation` on a 500-message conversation until the
view is laid out, vs the same window opening a 2-message conversation (the ratio shows the
cost does not grow with the chat's length), plus the store read alone for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

BARE_QT = """
import sys, time
t0 = time.perf_counter()
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1200, 760); w.show()
def shown():
    print(f"WINDOW_SHOWN {time.perf_counter() - t0:.4f}", flush=True); w.close()
QTimer.singleShot(0, shown)
app.exec()
"""

REPLY = (
    "Here is a short answer with **bold** text, a list:\n\n- one\n- two\n\n"
    "```python\nprint('hello')\n```\n\nAnd a closing line of prose to wrap it up."
)


def _env() -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("HEARTH_HOME", None)
    return env


def time_to_shown(command: list[str]) -> float:
    """Seconds from spawning `command` to its WINDOW_SHOWN line (wall clock, by the parent)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    shown = None
    for line in proc.stdout:
        if line.startswith("WINDOW_SHOWN"):
            shown = time.perf_counter() - start
            break
    _, err = proc.communicate(timeout=120)
    if shown is None or proc.returncode != 0:
        raise RuntimeError(f"no window (exit {proc.returncode}): {err[-2000:]}")
    return shown


def bench_startup(rounds: int) -> tuple[float, float, float]:
    """Medians (s): the app with the starter model, the app with no model, bare Qt."""
    ours_model: list[float] = []
    ours_empty: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            driver = [sys.executable, "-m", "tests.e2e.app_driver", "--mark-shown"]
            ours_model.append(
                time_to_shown(
                    [
                        *driver,
                        "--close-after-shown",
                        "--",
                        "--data-dir",
                        f"{tmp}/m{i}",
                        "--model",
                        str(MODEL),
                    ]
                )
            )
            ours_empty.append(
                time_to_shown([*driver, "--close-after-shown", "--", "--data-dir", f"{tmp}/e{i}"])
            )
            bare.append(time_to_shown([sys.executable, "-c", BARE_QT]))
    return statistics.median(ours_model), statistics.median(ours_empty), statistics.median(bare)


def bench_open_chat(messages: int, rounds: int) -> tuple[float, float, float]:
    """Medians (ms): open a `messages`-message chat, open a 2-message chat, store read only."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.core.chats.store import Store
    from app.core.inference.sampling import SamplingSettings
    from app.core.paths import app_paths
    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = SamplingSettings(temperature=0.7)
    with tempfile.TemporaryDirectory() as tmp:
        paths = app_paths(tmp).ensure()
        with Store.open(paths) as store:
            long_chat = store.create_conversation("long")
            short_chat = store.create_conversation("short")
            with store.transaction():
                for chat, turns in ((long_chat, messages // 2), (short_chat, 1)):
                    for i in range(turns):
                        user = store.add_user_message(chat.id, f"Question {i}: what next?")
                        reply = store.start_reply(user.id, model="m.gguf", settings=settings)
                        store.finish_reply(reply.id, REPLY, "complete", seed=i)
        window = MainWindow(paths)
        window.show()
        app.processEvents()

        def open_ms(conversation_id: int) -> float:
            window.new_chat()
            app.processEvents()
            start = time.perf_counter()
            window.open_conversation(conversation_id)
            app.processEvents()  # layout and the first paint
            return (time.perf_counter() - start) * 1000

        long_times, short_times, store_times = [], [], []
        for _ in range(rounds):
            long_times.append(open_ms(long_chat.id))
            short_times.append(open_ms(short_chat.id))
            start = time.perf_counter()
            window.store.snapshot(long_chat.id)
            store_times.append((time.perf_counter() - start) * 1000)
        assert len(window.current_path) == 2
        window.open_conversation(long_chat.id)
        assert len(window.current_path) == messages
        window.close()
    return (
        statistics.median(long_times),
        statistics.median(short_times),
        statistics.median(store_times),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()

    with_model, empty, bare = bench_startup(args.rounds)
    ratio = f"{with_model / bare:5.2f}x bare Qt"
    print(f"start to window shown (median of {args.rounds}, offscreen):")
    print(f"  hearth --model starter   {with_model * 1000:8.0f} ms   {ratio}")
    print(f"  hearth, no model         {empty * 1000:8.0f} ms   {empty / bare:5.2f}x bare Qt")
    print(f"  bare QApplication+window {bare * 1000:8.0f} ms")

    rounds = max(args.rounds, 5)
    long_ms, short_ms, store_ms = bench_open_chat(args.messages, rounds)
    ratio = f"{long_ms / short_ms:5.2f}x a 2-message chat"
    print(f"open a chat in the full window (median of {rounds}):")
    print(f"  {args.messages}-message chat        {long_ms:8.1f} ms   {ratio}")
    print(f"  2-message chat          {short_ms:8.1f} ms")
    print(f"  store read alone ({args.messages})   {store_ms:8.1f} ms")


if __name__ == "__main__":
    main()
