"""`hearth --self-test`: check an installation (or a bundle) headless, one line per check.

It finds the shipped files (the icon, the model catalog), loads the model (the starter,
or `--model`) with the real engine and generates a few tokens, then opens the main window
offscreen on a temporary data folder (the person's conversations and settings are never
touched), loads the model there through the worker thread, and closes it in order. Every
check prints `ok` or `FAILED` with what it saw and how long it took; the exit status is 0
only if all of them passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from app import __version__

log = logging.getLogger("hearth.self_test")

PROMPT = "Say hello in five words."
MAX_TOKENS = 8
SELF_TEST_CTX = 512
WINDOW_LOAD_TIMEOUT_MS = 120_000
_NAME_WIDTH = 10


class CheckFailed(Exception):
    """A check saw something wrong; the message says what."""


class Skipped(Exception):
    """A check could not run because an earlier one failed."""


@dataclass
class SelfTest:
    """Runs checks in order and prints one line for each."""

    out: TextIO
    results: list[bool] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, run: Callable[[], str]) -> bool:
        """Run one check: `run` returns what it saw, or raises to fail."""
        from app.core.errors import HearthError

        start = time.perf_counter()
        try:
            detail = run()
            status, ok = "ok", True
        except Skipped as exc:
            detail, status, ok = f"skipped: {exc}", "FAILED", False
        except (HearthError, CheckFailed) as exc:
            detail, status, ok = str(exc), "FAILED", False
            log.error("self-test %s failed: %s", name, exc)
        except Exception as exc:
            detail, status, ok = f"{type(exc).__name__}: {exc}", "FAILED", False
            log.error("self-test %s failed\n%s", name, traceback.format_exc())
        seconds = time.perf_counter() - start
        print(f"{status:<7}{name:<{_NAME_WIDTH}} {detail} ({seconds:.2f} s)", file=self.out)
        self.out.flush()
        self.results.append(ok)
        return ok


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run every check; return 0 if all passed, else 1."""
    from app.core.logs import current_log_file, setup_logging
    from app.core.paths import app_paths

    stream = out or sys.stdout
    paths = app_paths(args.data_dir)
    setup_logging(paths.logs)  # only the log folder is created in the person's data
    where = (
        f"bundle at {getattr(sys, '_MEIPASS', '?')}"
        if getattr(sys, "frozen", False)
        else f"Python {platform.python_version()}, {Path(__file__).resolve().parent.parent}"
    )
    print(f"hearth {__version__} self-test ({where})", file=stream)
    log.info("self-test started (%s)", where)
    started = time.perf_counter()
    test = SelfTest(stream)
    test.check("icon", _check_icon)
    test.check("catalog", _check_catalog)
    test.check("llama.cpp", _check_llama)
    test.check("model", lambda: _check_model(test, args.model, paths))
    test.check("generate", lambda: _check_generate(test))
    test.check("window", lambda: _check_window(test))
    _close_engine(test)
    seconds = time.perf_counter() - started
    failed = test.results.count(False)
    if failed:
        print(
            f"self-test FAILED: {failed} of {len(test.results)} checks failed "
            f"({seconds:.1f} s). Log: {current_log_file()}",
            file=stream,
        )
        return 1
    print(f"self-test passed: {len(test.results)} checks in {seconds:.1f} s", file=stream)
    return 0


def _check_icon() -> str:
    from app.core.data_files import resource_file

    sizes = (16, 32, 48, 256, 512)
    missing = [
        name
        for name in ("hearth.svg", *(f"icons/hearth-{s}.png" for s in sizes))
        if not resource_file(name).is_file()
    ]
    if missing:
        raise CheckFailed(f"missing in {resource_file('')}: {', '.join(missing)}")
    return f"found in {resource_file('icons')}"


def _check_catalog() -> str:
    from app.core.data_files import catalog_file

    path = catalog_file()
    try:
        catalog = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckFailed(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CheckFailed(f"{path} cannot be read: {exc}") from exc
    models = catalog.get("models") if isinstance(catalog, dict) else None
    if not models:
        raise CheckFailed(f"{path} lists no models")
    return f"{len(models)} model{'' if len(models) == 1 else 's'} in {path}"


def _check_llama() -> str:
    import llama_cpp

    gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
    return f"llama-cpp-python {llama_cpp.__version__} ({gpu})"


def _check_model(test: SelfTest, model: str | None, paths: Any) -> str:
    from app.core.inference.engine import Engine
    from app.core.inference.load_options import LoadOptions
    from app.core.models.library import resolve_model
    from app.core.models.starter import STARTER, is_installed

    if model is None and getattr(sys, "frozen", False) and not is_installed(paths.models):
        # `hearth starter` needs Python's pip, which a bundle does not carry.
        raise CheckFailed(
            f"The starter model ({STARTER.filename}) is not installed in {paths.models}. "
            "Pass --model PATH to a .gguf file to test with it."
        )
    path = resolve_model(model, paths)
    engine = Engine()
    loaded = engine.load(path, LoadOptions(n_ctx=SELF_TEST_CTX))
    test.context["engine"] = engine
    test.context["model_path"] = path
    info = loaded.info
    return (
        f"{path.name}: {info.architecture}, {info.n_params / 1e6:.0f}M parameters, "
        f"{info.quant}, {loaded.n_gpu_layers} GPU layers, {loaded.n_threads} threads"
    )


def _check_generate(test: SelfTest) -> str:
    from app.core.inference.messages import Message
    from app.core.inference.events import GenerationDone
    from app.core.inference.sampling import SamplingSettings

    engine = test.context.get("engine")
    if engine is None:
        raise Skipped("no model loaded")
    settings = SamplingSettings(temperature=0.0, max_tokens=MAX_TOKENS, seed=1)
    done: GenerationDone | None = None
    for event in engine.generate([Message("user", PROMPT)], settings):
        if isinstance(event, GenerationDone):
            done = event
    if done is None or done.stats.completion_tokens < 1:
        raise CheckFailed("the model produced no tokens")
    stats = done.stats
    return (
        f"{stats.completion_tokens} tokens at {stats.decode_tps:.0f} tok/s "
        f"(prefill {stats.prompt_tokens} tokens at {stats.prefill_tps:.0f} tok/s): "
        f"{done.text.strip()!r}"
    )


def _close_engine(test: SelfTest) -> None:
    engine = test.context.pop("engine", None)
    if engine is not None:
        engine.close()


def _check_window(test: SelfTest) -> str:
    """Open the main window offscreen on a throwaway data folder, load, close, shut down."""
    _close_engine(test)  # one model in memory at a time
    with _offscreen_qt():
        from PySide6.QtWidgets import QApplication

        from app.core.paths import app_paths
        from app.ui.app import configure_application, qt_messages_to_log
        from app.ui.gui_gc import GuiThreadGarbageCollector
        from app.ui.main_window import MainWindow

        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
        configure_application(app)
        if app.windowIcon().isNull():
            raise CheckFailed("the window icon could not be loaded")
        collector = GuiThreadGarbageCollector(app)
        with (
            qt_messages_to_log(),
            tempfile.TemporaryDirectory(prefix="hearth-self-test-") as tmp,
        ):
            window = MainWindow(app_paths(tmp).ensure())
            try:
                window.show()
                app.processEvents()
                loaded = _load_in_window(window, test.context.get("model_path"))
                window.close()
                app.processEvents()
            finally:
                stopped = window.shutdown()
                window.deleteLater()
                app.processEvents()
                collector.uninstall()
                collector.deleteLater()
            if not stopped:
                raise CheckFailed("the inference thread did not stop when the window closed")
    platform = app.platformName()
    return f"opened and closed on Qt {platform}{loaded}, threads stopped"


def _load_in_window(window: Any, model_path: Path | None) -> str:
    """Load the model through the window's inference thread; return a note for the line."""
    if model_path is None:
        return ""
    from PySide6.QtCore import QEventLoop, QObject, QTimer, Slot

    class Waiter(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.loop = QEventLoop()
            self.outcome = "timed out"

        @Slot(object)
        def loaded(self, _model: object) -> None:
            self.outcome = "loaded"
            self.loop.quit()

        @Slot()
        def ended(self) -> None:
            self.outcome = "failed"
            self.loop.quit()

    waiter = Waiter()
    window.modelLoaded.connect(waiter.loaded)
    window.modelLoadEnded.connect(waiter.ended)
    QTimer.singleShot(WINDOW_LOAD_TIMEOUT_MS, waiter.loop.quit)
    window.load_model(model_path)
    waiter.loop.exec()
    window.modelLoaded.disconnect(waiter.loaded)
    window.modelLoadEnded.disconnect(waiter.ended)
    if waiter.outcome != "loaded":
        notice = window.notice_text()
        raise CheckFailed(f"loading the model in the window {waiter.outcome}: {notice}")
    return ", model loaded by the worker thread"


@contextmanager
def _offscreen_qt() -> Iterator[None]:
    """Qt without a display: the self-test runs headless, in a terminal or a CI job."""
    previous = os.environ.get("QT_QPA_PLATFORM")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("QT_QPA_PLATFORM", None)
        else:
            os.environ["QT_QPA_PLATFORM"] = previous
