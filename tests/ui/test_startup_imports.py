"""What the GUI imports to show its window: none of the heavy libraries it needs only later.

A child process records every import statement executed (module level and inside the
functions that run) while it imports the `hearth` entry and the GUI, builds the main window
on an empty data folder and shows it. From that graph of who imported what, no heavy
library may be reachable from the entry: llama.cpp (and numpy and jinja2, which it drags
in), the GGUF reader's `gguf`, Markdown and code highlighting (a chat with no messages
shows none). Each is imported on first use, after the window is up; the engine itself
runs in the engine host's process, so the GUI process never needs llama.cpp to chat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("llama_cpp", "numpy", "jinja2", "gguf", "markdown_it", "httpx", "starlette", "uvicorn")

CHILD = r"""
import builtins, importlib.util, json, sys
edges = set()
real_import = builtins.__import__

def record(name, globals=None, locals=None, fromlist=(), level=0):
    module = real_import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__") or "?"
    if level:
        name = importlib.util.resolve_name("." * level + name, globals["__package__"])
    parts = name.split(".")
    targets = {".".join(parts[: i + 1]) for i in range(len(parts))}
    for item in fromlist or ():
        if f"{name}.{item}" in sys.modules:
            targets.add(f"{name}.{item}")
    edges.update((importer, t) for t in targets if t != importer)
    return module

builtins.__import__ = record
import app.cli  # the `hearth` entry (python -m app)
import app.ui.app  # the GUI entry it calls
from PySide6.QtWidgets import QApplication
from app.core.paths import app_paths
from app.ui.main_window import MainWindow

qapp = QApplication(sys.argv[:1])
window = MainWindow(app_paths(sys.argv[1]).ensure())
window.show()
for _ in range(5):
    qapp.processEvents()
shown = window.isVisible()
window.close()
builtins.__import__ = real_import
print(json.dumps({"edges": sorted(edges), "shown": shown, "loaded": sorted(sys.modules)}))
"""


def start_up_imports(data_dir: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(importer, imported) pairs executed while the window starts, and the modules loaded."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    env.pop("HEARTH_HOME", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shown"]
    return {(a, b) for a, b in result["edges"]}, set(result["loaded"])


def path_to(edges: set[tuple[str, str]], start: str, goal: str) -> list[str] | None:
    """The shortest chain of imports from `start` to the package `goal`, or None."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    seen = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for target in graph.get(module, ()):
            if target in seen:
                continue
            seen[target] = [*seen[module], target]
            if target == goal or target.startswith(goal + "."):
                return seen[target]
            queue.append(target)
    return None


def test_the_window_shows_without_importing_llama_cpp_numpy_jinja2_or_markdown(
    tmp_path: Path,
) -> None:
    edges, loaded = start_up_imports(tmp_path / "home")

    chains = {
        heavy: chain for heavy in HEAVY if (chain := path_to(edges, "__main__", heavy)) is not None
    }
    assert chains == {}, "imported while the window starts (make these imports lazy):\n" + (
        "\n".join(f"  {heavy}: {' -> '.join(chain)}" for heavy, chain in chains.items())
    )
    # The edges are real: the window's own modules and Qt were seen, the heavy ones loaded.
    assert path_to(edges, "__main__", "app.ui.main_window") is not None
    assert not any(name in loaded for name in HEAVY)
