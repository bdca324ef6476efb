"""Send latency on a long chat: the GUI's work between Enter and the request leaving for the
inference worker, in the real main window, this tree against an earlier commit.

    python -m tests.bench.send_latency [--before REV] [--messages 500] [--rounds 9]

Each round runs one child process per tree, alternately (A B A B ...): the child opens a
500-message chat in a `MainWindow` with the starter model loaded, then sends a message
several times, timing from `send_message` to the moment the window calls
`InferenceThread.generate` (everything the GUI does before inference: saving the message,
reading and drawing the chat), and stops each reply at once. It prints the median of the
paired per-round ratios (this tree / before) and their range, and each tree's median.
The earlier commit is checked out in a temporary git worktree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SENDS = 5


def child(messages: int) -> None:
    """Runs inside the tree under test (PYTHONPATH); prints a JSON list of ms per send."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    try:
        from app.core.chats.store import Store
    except ImportError:  # before the core moved into packages
        from app.core.store import Store  # type: ignore[no-redef]
    try:
        from app.core.inference.load_options import LoadOptions
    except ImportError:
        from app.core.engine import LoadOptions  # type: ignore[no-redef]
    try:
        from app.core.inference.sampling import SamplingSettings
    except ImportError:
        from app.core.sampling import SamplingSettings  # type: ignore[no-redef]
    from app.core.paths import app_paths
    from app.ui.main_window import MainWindow

    app = QApplication([])
    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    paths = app_paths(home).ensure()
    text = "A line about lighthouses and the sea, long enough to be a real message. " * 3
    with Store.open(paths) as store:
        store.set_default_settings(SamplingSettings(temperature=0.0, max_tokens=1))
        chat = store.create_conversation("Long chat")
        for _ in range(messages // 2):
            user = store.add_user_message(chat.id, text)
            reply = store.start_reply(user.id, model="m", settings=SamplingSettings())
            store.finish_reply(reply.id, text, "complete")
    window = MainWindow(paths, load_options=LoadOptions(n_ctx=1024, n_threads=1))
    window.show()
    model = Path(os.environ["HEARTH_BENCH_MODEL"])
    window.load_model(model)
    deadline = time.monotonic() + 120
    while window.model is None and time.monotonic() < deadline:
        app.processEvents()
    window.open_conversation(chat.id)
    for _ in range(20):
        app.processEvents()
    inference = window.inference
    real_generate = inference.generate
    sent: list[float] = []

    def timed_generate(*args: object, **kwargs: object) -> None:
        sent.append(time.perf_counter())
        real_generate(*args, **kwargs)  # type: ignore[arg-type]

    inference.generate = timed_generate  # type: ignore[method-assign]
    results = []
    for i in range(SENDS):
        start = time.perf_counter()
        window.send_message(f"Question {i}?")
        if len(sent) == i + 1:
            results.append((sent[-1] - start) * 1000)
        window.stop_reply()
        deadline = time.monotonic() + 120
        while (window.replies_in_flight or window.active_request is not None) and (
            time.monotonic() < deadline
        ):
            app.processEvents()
    window.close()
    print(json.dumps(results))


def run_tree(tree: Path, messages: int, model: Path) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(tree), HEARTH_BENCH_MODEL=str(model))
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(messages)],  # `app` from `tree`
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before", default="8ae554c", help="the earlier commit (default: %(default)s)"
    )
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(REPO))
    from app.core.models.starter import install_starter

    model = install_starter(REPO / "tests" / ".cache" / "models")
    with tempfile.TemporaryDirectory(prefix="hearth-before-") as scratch:
        before = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        try:
            ours_all: list[float] = []
            theirs_all: list[float] = []
            ratios = []
            for _ in range(args.rounds):
                ours = statistics.median(run_tree(REPO, args.messages, model))
                theirs = statistics.median(run_tree(before, args.messages, model))
                ours_all.append(ours)
                theirs_all.append(theirs)
                ratios.append(ours / theirs)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                check=False,
                capture_output=True,
            )
    print(
        f"send -> request to the worker, {args.messages}-message chat, {args.rounds} rounds "
        f"of {SENDS} sends:"
    )
    print(f"  this tree: median {statistics.median(ours_all):.1f} ms")
    print(f"  {args.before}: median {statistics.median(theirs_all):.1f} ms")
    print(
        f"  ratio (this / before): median {statistics.median(ratios):.3f}, "
        f"range {min(ratios):.3f}-{max(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
