"""Resident memory of the app with a model loaded and a 500-message chat open, against the
model's own footprint (weights + KV cache + compute + output buffers, as llama.cpp reports).

    python -m tests.bench.memory [--model smollm2|gemma3] [--messages 500] [--n-ctx 4096]

Each figure comes from a fresh process (offscreen Qt), medians of `--rounds`:
  * app: `MainWindow` shown, the model loaded through the inference worker, the chat open:
    the GUI process plus its engine host process (where the model lives);
  * bare: the same model loaded by `Engine` alone (no Qt, no store), one short reply;
  * footprint: the buffers llama.cpp printed while loading (tests' `capture_buffers`).
Weights are read into memory (`use_mmap=False`) so they count in the resident set in full
whether or not a page has been touched.
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

MiB = 2**20
REPO = Path(__file__).resolve().parents[2]
REPLY = (
    "Here is a short answer with **bold** text, a list:\n\n- one\n- two\n\n"
    "```python\nprint('hello')\n```\n\nAnd a closing line of prose to wrap it up."
)


def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_bare(model: Path, n_ctx: int) -> dict[str, int]:
    from app.core.inference.engine import Engine
    from app.core.inference.load_options import LoadOptions
    from app.core.inference.messages import Message
    from app.core.inference.sampling import SamplingSettings
    from app.core.machine.load_report import capture_buffers

    before = rss()
    engine = Engine()
    with capture_buffers() as capture:
        engine.load(model, LoadOptions(n_ctx=n_ctx, use_mmap=False))
        settings = SamplingSettings(temperature=0.0, max_tokens=8)
        list(engine.generate([Message("user", "Hello there.")], settings))
    measured = capture.result()
    out = {
        "rss": rss(),
        "python_rss": before,
        "weights": measured.weights_total,
        "kv": measured.kv_total,
        "compute": measured.compute_total,
        "output": measured.output_total,
    }
    engine.close()
    return out


def child_app(model: Path, n_ctx: int, messages: int) -> dict[str, int]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from app.core.chats.store import Store
    from app.core.inference.load_options import LoadOptions
    from app.core.inference.sampling import SamplingSettings
    from app.core.paths import app_paths
    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = SamplingSettings(temperature=0.7)
    with tempfile.TemporaryDirectory() as tmp:
        paths = app_paths(tmp).ensure()
        with Store.open(paths) as store:
            chat = store.create_conversation("long")
            with store.transaction():
                for i in range(messages // 2):
                    user = store.add_user_message(chat.id, f"Question {i}: what next?")
                    reply = store.start_reply(user.id, model="m.gguf", settings=settings)
                    store.finish_reply(reply.id, REPLY, "complete", seed=i)
        options = LoadOptions(n_ctx=n_ctx, use_mmap=False)
        window = MainWindow(paths, load_options=options)
        window.show()
        app.processEvents()
        shown = rss()
        window.load_model(model, options)
        deadline = time.monotonic() + 300
        while window.model is None and time.monotonic() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if window.model is None:
            raise RuntimeError(f"{model.name} did not load in the window within 300 s")
        window.open_conversation(chat.id)
        for _ in range(20):
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        assert len(window.current_path) == messages
        host = window.inference.worker.host_pid
        assert host is not None, "the model is loaded in the engine host"
        gui, hosted = rss(), rss(host)
        out = {"rss": gui + hosted, "gui_rss": gui, "host_rss": hosted, "shown_rss": shown}
        window.close()
        app.processEvents()
    return out


def run_child(kind: str, args: argparse.Namespace, model: Path) -> dict[str, int]:
    command = [sys.executable, "-m", "tests.bench.memory", "--child", kind, "--model-path"]
    command += [str(model), "--n-ctx", str(args.n_ctx), "--messages", str(args.messages)]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} child failed (exit {done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, int] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "gemma3"), default="smollm2")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("app", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "bare":
            print(json.dumps(child_bare(args.model_path, args.n_ctx)))
        else:
            print(json.dumps(child_app(args.model_path, args.n_ctx, args.messages)))
        return
    from tests.bench import models

    model = models.smollm2() if args.model == "smollm2" else models.gemma3_270m()
    apps, bares = [], []
    for _ in range(args.rounds):
        apps.append(run_child("app", args, model))
        bares.append(run_child("bare", args, model))

    def med(rows: list[dict[str, int]], key: str) -> float:
        return statistics.median(r[key] for r in rows) / MiB

    footprint = sum(med(bares, k) for k in ("weights", "kv", "compute", "output"))
    app_rss, bare_rss = med(apps, "rss"), med(bares, "rss")
    print(
        f"{model.name}, n_ctx {args.n_ctx}, {args.messages}-message chat, "
        f"median of {args.rounds} fresh processes each:"
    )
    print(
        f"  model footprint (llama.cpp)     {footprint:8.1f} MiB  (weights "
        f"{med(bares, 'weights'):.1f} + KV {med(bares, 'kv'):.1f} + compute "
        f"{med(bares, 'compute'):.1f} + output {med(bares, 'output'):.1f})"
    )
    imports = med(bares, "python_rss")
    print(f"  bare Engine process RSS        {bare_rss:8.1f} MiB  (python + imports {imports:.1f})")
    print(f"  app window shown, no model     {med(apps, 'shown_rss'):8.1f} MiB")
    print(
        f"  app + model + chat open RSS    {app_rss:8.1f} MiB  (GUI process "
        f"{med(apps, 'gui_rss'):.1f} + engine host {med(apps, 'host_rss'):.1f})"
    )
    print(
        f"  overhead over the footprint    {app_rss - footprint:8.1f} MiB (target < 200); "
        f"over the bare Engine process {app_rss - bare_rss:.1f} MiB"
    )


if __name__ == "__main__":
    main()
