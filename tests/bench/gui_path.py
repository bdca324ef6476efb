"""The whole GUI path: a reply made in the real main window against `hearth ask`.

    python -m tests.bench.gui_path [--model PATH] [--rounds 9] [--tokens 512] [--threads N]
                                   [--long-tokens 4000] [--window 1400x900] [--quick]
                                   [--summary FILE]

One child process runs the real `MainWindow` (offscreen, `--window` big: a laptop's window;
the offscreen screen alone would make it 813x640) with the model loaded, as the app does;
each round it sends the same long-story prompt (fixed seed and sampler settings) in a new
chat, with the tokens view off, with it on, and with Python's thread switch interval at
0.5 ms instead of the default 5 ms (GIL hand-offs between the GUI thread and the decode
loop); between them the parent runs `hearth ask --json` with the same model, prompt, seed,
settings, context and threads in a fresh process. The order rotates every round. Printed:

- decode tokens/s of each GUI variant, from the reply's own `GenerationStats` and from
  the wall clock between the first and the last `tokens` signal reaching the GUI thread,
  against `hearth ask`'s: paired medians and ranges of the per-round ratios;
- where the time goes, per GUI reply: CPU time per token of the GUI thread, of the
  inference worker's thread (reading the engine host's pipe) and of the whole GUI process,
  the time in the reply's database saves (packing token data included) and the number of
  chunks; and of each thread of the engine host (its decode loop is "main", llama.cpp's
  workers are "python", the thread that sends the batches is "hearth-sender");
- the wake-ups per chunk of the GUI thread, the inference worker and the host's sender
  (voluntary context switches), and how often llama.cpp's threads were preempted per
  token (involuntary ones): with every core taken by llama.cpp, each wake-up of the app's
  threads takes a core from one of them while the other waits for it at the next barrier;
- how long llama.cpp's threads waited for a core per token (schedstat's run delay: runnable,
  but another thread had the core) in the GUI replies and in the same rounds' `hearth ask`:
  the difference, as a share of a decode step, bounds from above what the app's threads
  take from the decode, and unlike the paired tokens/s it does not move with this machine's
  own speed (on a VM that speed swings by 10-20% between identical runs);
- one long reply per view with a 4 ms heartbeat on the GUI thread: the event loop's
  longest stall while streaming (target under 50 ms), the cost of appending a chunk to
  the chat view per token at the start against the end of the reply, and Python's full
  garbage collections during it (the app holds them while a reply streams: one took
  ~90 ms here); then the same reply
  without the heartbeat: the GUI thread's whole CPU per token (from one chunk's arrival
  to the next: append, layout, paint, saves) at the start against the end, and per chunk
  in each tenth of the reply, with the tenth in which the reply outgrew the view and the
  chat began to scroll (each new line then also moves the view);
- after the long replies, one full collection as the app's collector runs it between
  replies: its time and the objects it walks (those alive once the model had loaded are
  frozen, `gc.freeze`, and not walked).

`--quick` is a smoke run: one round of 8 tokens, a 16-token long reply. `--summary` appends
tab-separated rows to gpu_check.sh's table.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
SEED = 1234
N_CTX = 4096
SYSTEM = "You are a storyteller. " + "Write vivid, long, detailed stories. " * 40
PROMPT = "Tell me a long story about a lighthouse keeper and a storm."


@dataclass(frozen=True)
class Variant:
    """One way of making the GUI reply."""

    name: str
    tokens_view: bool
    switch_ms: float | None = None  # sys.setswitchinterval during the reply (None: as is)


VARIANTS = (
    Variant("GUI, tokens view off", False),
    Variant("GUI, tokens view on", True),
    Variant("GUI, view off, switch 0.5 ms", False, 0.5),
)
ASK = "hearth ask --json"
ASK_READ_S = 0.25


# ----- the GUI child -----


def tasks_of(pid: int | None = None) -> list[tuple[Path, bool]]:
    """The `/proc` folder of each thread of a process (default: this one), and whether it
    is the process's first thread (Linux; else [])."""
    where = str(pid if pid is not None else os.getpid())
    try:
        tasks = os.listdir(f"/proc/{where}/task")
    except OSError:
        return []
    return [(Path(f"/proc/{where}/task/{task}"), task == where) for task in tasks]


def thread_cpu(pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far of each thread of a process (default: this one), by thread name;
    the process's first thread is named "main" (Linux; else {})."""
    return {name: cpu for name, (cpu, _wait) in thread_sched(pid).items()}


def thread_sched(pid: int | None = None) -> dict[str, tuple[float, float]]:
    """Seconds so far of each thread of a process (default: this one) on a CPU and waiting
    for one (runnable, but another thread had the core), by thread name; the process's
    first thread is "main" (Linux; else {}).

    Read from schedstat (nanoseconds) where the kernel keeps it: the tick counts in `stat`
    charge a whole 10 ms tick to whichever thread runs when it fires, which overcharges
    threads woken by timers (they run right at a tick); the wait is then unknown (0)."""
    out: dict[str, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for task, first in tasks_of(pid):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if pid is not None and first:
            name = "main"
        try:
            fields = (task / "schedstat").read_text().split()
            seconds, wait = int(fields[0]) / 1e9, int(fields[1]) / 1e9
        except (OSError, ValueError, IndexError):
            fields = stat[stat.rindex(")") + 2 :].split()
            seconds, wait = (int(fields[11]) + int(fields[12])) / tick, 0.0
        had = out.get(name, (0.0, 0.0))
        out[name] = (had[0] + seconds, had[1] + wait)
    return out


def thread_switches(pid: int | None = None) -> dict[str, tuple[int, int]]:
    """Context switches so far of each thread of a process (default: this one), by thread
    name (the first thread is "main"): (voluntary, involuntary). A voluntary one is a
    thread going to sleep (each is a wake-up later: on a machine whose cores llama.cpp's
    threads fill, a wake-up takes a core from one of them); an involuntary one is a
    thread preempted. Linux; else {}."""
    out: dict[str, tuple[int, int]] = {}
    for task, first in tasks_of(pid):
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
        name = "main" if first else fields.get("Name", "?").strip()
        try:
            counts = (
                int(fields["voluntary_ctxt_switches"]),
                int(fields["nonvoluntary_ctxt_switches"]),
            )
        except (KeyError, ValueError):
            continue
        had = out.get(name, (0, 0))
        out[name] = (had[0] + counts[0], had[1] + counts[1])
    return out


N = TypeVar("N", int, float)


def since(before: dict[str, tuple[N, N]], now: dict[str, tuple[N, N]]) -> dict[str, tuple[N, N]]:
    """Each thread's two counters between two readings: CPU and wait seconds
    (`thread_sched`), or voluntary and involuntary switches (`thread_switches`)."""
    return {
        k: (v[0] - before.get(k, (0, 0))[0], v[1] - before.get(k, (0, 0))[1])
        for k, v in now.items()
    }


def child(model: Path, threads: int, home: Path, size: tuple[int, int]) -> None:
    """Runs the window; reads one JSON command per stdin line, answers one JSON line."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication, QScrollArea

    import app.core.chats.reply_writer as reply_writer
    from app.core.chats.store import Store
    from app.core.inference.load_options import LoadOptions
    from app.core.inference.sampling import SamplingSettings
    from app.core.paths import app_paths
    from app.ui.app import paint_on_the_gui_thread
    from app.ui.gui_gc import GuiThreadGarbageCollector
    from app.ui.main_window import MainWindow
    from tests.bench.chat_view import Heartbeat

    paint_on_the_gui_thread()  # as the app does
    qapp = QApplication([])
    paths = app_paths(home).ensure()
    with Store.open(paths) as store:
        store.set_default_system_prompt(SYSTEM)
        store.set_default_settings(SamplingSettings(seed=SEED))
    window = MainWindow(paths, load_options=LoadOptions(n_ctx=N_CTX, n_threads=threads))
    collector = GuiThreadGarbageCollector(qapp, window.is_streaming)  # as the app does
    window.modelLoaded.connect(collector.settle_soon)  # as the app does
    window.resize(*size)
    window.show()
    window.load_model(model)
    wait = QEventLoop()
    window.modelLoaded.connect(wait.quit)
    window.modelLoadEnded.connect(wait.quit)
    wait.exec()
    if window.model is None:
        raise SystemExit(f"the model did not load: {window.notice_text}")
    while not gc.get_freeze_count():  # the collector's next check settles the heap
        qapp.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 100)

    saves: list[float] = []
    real_flush = reply_writer.ReplyWriter.flush

    def timed_flush(self: Any) -> None:  # text + packed token data, one transaction
        t0 = time.perf_counter()
        real_flush(self)
        saves.append(time.perf_counter() - t0)

    reply_writer.ReplyWriter.flush = timed_flush  # type: ignore[method-assign]
    view = window.chat_view
    appends: list[float] = []
    real_append = view.append_reply_text

    def timed_append(message_id: int, text: str) -> None:
        t0 = time.perf_counter()
        real_append(message_id, text)
        appends.append(time.perf_counter() - t0)

    view.append_reply_text = timed_append  # type: ignore[method-assign]

    class Arrivals:
        """When each chunk of tokens reaches the chat view (on the GUI thread), its token
        count, and the GUI thread's CPU time then. Hooked into the view, not connected to
        the worker's signal: one more receiver would be one more event per chunk."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.counts: list[int] = []
            self.cpu: list[float] = []
            self.scroll_from: int | None = None  # the first chunk shown while scrolling

    arrivals = Arrivals()
    real_records = view.append_token_records

    scroll_area = view.findChild(QScrollArea, "chatScrollArea")
    assert scroll_area is not None
    bar = scroll_area.verticalScrollBar()

    def arrived(message_id: int, records: Any) -> None:
        if arrivals.scroll_from is None and bar.maximum() > 0:
            arrivals.scroll_from = len(arrivals.times)  # the reply outgrew the view
        arrivals.times.append(time.perf_counter())
        arrivals.counts.append(len(records))
        arrivals.cpu.append(time.thread_time())
        real_records(message_id, records)

    view.append_token_records = arrived  # type: ignore[method-assign]
    print("READY", flush=True)

    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        if command.get("collect"):  # a full collection now, as the app's collector runs it
            t0 = time.perf_counter()
            gc.collect()
            collect_ms = (time.perf_counter() - t0) * 1e3
            walked, frozen = len(gc.get_objects()), gc.get_freeze_count()
            print(json.dumps({"ms": collect_ms, "walked": walked, "frozen": frozen}), flush=True)
            continue
        window.new_chat()
        window.set_tokens_view(bool(command["tokens_view"]))
        window.sampling_panel.set_settings(
            SamplingSettings(seed=SEED, max_tokens=int(command["max_tokens"]))
        )
        qapp.processEvents()
        arrivals.times.clear()
        arrivals.counts.clear()
        arrivals.cpu.clear()
        arrivals.scroll_from = None
        saves.clear()
        appends.clear()
        beat = Heartbeat() if command.get("heartbeat") else None
        collections = GcPasses()
        finished: list[Any] = []
        loop = QEventLoop()

        def done(
            _request: int, message: object, end: QEventLoop = loop, got: list[Any] = finished
        ) -> None:
            got.append(message)
            end.quit()

        def failed(
            _request: int, why: str, end: QEventLoop = loop, got: list[Any] = finished
        ) -> None:
            got.append(why)
            end.quit()

        window.replyFinished.connect(done)
        window.replyFailed.connect(failed)
        old_switch = sys.getswitchinterval()
        if command.get("switch_ms"):
            sys.setswitchinterval(float(command["switch_ms"]) / 1000)
        if beat is not None:
            beat.start()
        QTimer.singleShot(600_000, loop.quit)
        engine_host = window.inference.worker._engine  # the bench reads the host's threads
        host_pid = engine_host.pid if engine_host is not None else None
        threads0, host0 = thread_cpu(), thread_sched(host_pid) if host_pid else {}
        switches0 = thread_switches()
        host_switches0 = thread_switches(host_pid) if host_pid else {}
        cpu0, process0 = time.thread_time(), time.process_time()  # after reading /proc
        window.send_message(PROMPT)
        loop.exec()
        cpu = time.thread_time() - cpu0
        process_cpu = time.process_time() - process0
        threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
        host_sched = since(host0, thread_sched(host_pid)) if host_pid else {}
        switches = since(switches0, thread_switches())
        host_switches = since(host_switches0, thread_switches(host_pid)) if host_pid else {}
        sys.setswitchinterval(old_switch)
        full_gc_ms = collections.stop()  # before any early `continue`: no callback left
        if beat is not None:
            beat.stop()
        window.replyFinished.disconnect(done)
        window.replyFailed.disconnect(failed)
        message = finished[0] if finished else None
        if message is None or isinstance(message, str):
            print(json.dumps({"error": message or "no reply within 10 minutes"}), flush=True)
            continue
        stats = dict(message.stats or {})
        times, counts = arrivals.times, arrivals.counts
        result = {
            "decode_tps": stats.get("decode_tps"),
            "completion_tokens": stats.get("completion_tokens"),
            "text": message.content,
            "chunks": len(times),
            "gui_cpu_s": cpu,
            "process_cpu_s": process_cpu,
            "worker_cpu_s": threads.get("hearth-inferenc"),  # Linux keeps 15 characters
            "host_cpu_s": {k: v[0] for k, v in host_sched.items()},
            "host_wait_s": {k: v[1] for k, v in host_sched.items()},
            "switches": switches,
            "host_switches": host_switches,
            "saves": len(saves),
            "save_s": sum(saves),
            "wall_tps": (sum(counts) - counts[0]) / (times[-1] - times[0])
            if len(times) > 1 and times[-1] > times[0]
            else None,
        }
        if beat is not None:
            # Lateness from the first chunk to the last (the streaming itself).
            result["lateness_ms"] = beat.lateness
        result["full_gc_ms"] = full_gc_ms
        if len(appends) == len(counts) and counts:
            result["append_s"] = appends
            result["append_n"] = counts
            # The GUI thread's CPU from one chunk's arrival to the next: the chunk's whole
            # cost (append, layout, paint, saves), whatever runs it later.
            cpu = arrivals.cpu
            result["chunk_cpu_s"] = [b - a for a, b in itertools.pairwise(cpu)]
            result["scroll_from"] = arrivals.scroll_from
        print(json.dumps(result), flush=True)
    window.close()
    collector.uninstall()


class GcPasses:
    """Times Python's full garbage collections (generation 2) from creation to `stop`."""

    def __init__(self) -> None:
        self.full_ms: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._on_pass)

    def _on_pass(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.full_ms.append((time.perf_counter() - self._start) * 1e3)

    def stop(self) -> list[float]:
        gc.callbacks.remove(self._on_pass)
        return self.full_ms


class GuiChild:
    """The parent's handle on the child running the window."""

    def __init__(
        self,
        model: Path,
        threads: int,
        home: Path,
        env: dict[str, str],
        window: tuple[int, int] = (1400, 900),
    ) -> None:
        command = [sys.executable, "-m", "tests.bench.gui_path", "--child", str(home)]
        command += ["--model", str(model), "--threads", str(threads)]
        command += ["--window", f"{window[0]}x{window[1]}"]
        self.log = home.with_suffix(".log")
        home.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),  # Qt's offscreen plugin is chatty
            text=True,
        )
        if self._line() != "READY":
            raise RuntimeError("the GUI child did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the GUI child ended (exit {code}):\n{tail}")
            if line.startswith(("READY", "{")):
                return line.strip()

    def reply(self, **command: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._line())
        if "error" in result:
            raise RuntimeError(f"the GUI reply failed: {result['error']}")
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# ----- hearth ask -----


def ask(model: Path, threads: int, tokens: int, home: Path, env: dict[str, str]) -> dict[str, Any]:
    """One `hearth ask --json` in a fresh process: its JSON stats line, plus its threads' CPU
    and wait seconds (`cpu_s`, `wait_s`) as last read while it ran (read every
    `ASK_READ_S`; a read takes some 0.25 ms of CPU: about 0.1% of a core)."""
    command = [sys.executable, "-m", "app", "ask", PROMPT, "--json", "--system", SYSTEM]
    command += ["--seed", str(SEED), "--max-tokens", str(tokens), "--threads", str(threads)]
    command += ["--ctx", str(N_CTX), "--model", str(model), "--data-dir", str(home)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        last: dict[str, tuple[float, float]] = {}
        deadline = time.monotonic() + 600
        while True:
            try:
                code = proc.wait(timeout=ASK_READ_S)
                break
            except subprocess.TimeoutExpired:
                last = thread_sched(proc.pid) or last
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError("hearth ask took more than 10 minutes") from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"hearth ask failed (exit {code}): {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["cpu_s"] = {k: v[0] for k, v in last.items()}
    result["wait_s"] = {k: v[1] for k, v in last.items()}
    return result


# ----- figures -----


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def ratios(ours: list[float], base: list[float]) -> list[float]:
    return [o / b for o, b in zip(ours, base, strict=True)]


def render_cost(result: dict[str, Any], key: str = "append_s") -> tuple[float, float] | None:
    """µs per token of each chunk's `key` (the append; the GUI thread's CPU until the next
    chunk): the first tenth of the chunks against the last tenth."""
    times, counts = result.get(key), result.get("append_n")
    if not times or len(times) < 10:
        return None
    counts = counts[: len(times)]  # the CPU after the last chunk is not measured
    k = max(1, len(times) // 10)

    def per_token(t: list[float], n: list[int]) -> float:
        return sum(t) / max(1, sum(n)) * 1e6

    return per_token(times[:k], counts[:k]), per_token(times[-k:], counts[-k:])


def summary_row(summary: Path | None, model: str, what: str, value: str) -> None:
    if summary is not None:
        with summary.open("a", encoding="utf-8") as out:
            out.write(f"{model}\t{what}\t{value}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.cli.common import some_threads
    from app.core.machine.hardware import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the starter model")
    parser.add_argument("--rounds", type=positive, default=9)
    parser.add_argument("--tokens", type=positive, default=512, help="reply length to time")
    parser.add_argument("--long-tokens", type=positive, default=4000, help="the stall run's")
    parser.add_argument("--threads", type=some_threads, default=default_threads())
    parser.add_argument("--window", type=window_size, default="1400x900", help="WxH pixels")
    parser.add_argument("--quick", action="store_true", help="1 round of 8 tokens (smoke)")
    parser.add_argument("--summary", type=Path, default=None, help="append TSV rows here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.tokens, args.long_tokens = 1, 8, 16
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file; give the path of a .gguf model")
    return args


def window_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 400 and int(height) >= 300):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the window's size as WxH, 400x300 or more"
        )
    return int(width), int(height)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.model is None:
        from tests.bench.models import smollm2

        args.model = smollm2()
    if args.child is not None:
        child(args.model, args.threads, args.child, args.window)
        return
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    env.setdefault("HEARTH_PROBE_CACHE", str(REPO / "tests" / ".cache" / "probe"))
    env.pop("HEARTH_HOME", None)
    with tempfile.TemporaryDirectory(prefix="hearth-gui-path-") as scratch:
        gui = GuiChild(args.model, args.threads, Path(scratch) / "gui", env, args.window)
        try:
            run(args, gui, Path(scratch) / "ask", env)
        finally:
            gui.close()


def run(args: argparse.Namespace, gui: GuiChild, ask_home: Path, env: dict[str, str]) -> None:
    names = [v.name for v in VARIANTS] + [ASK]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}

    def once(name: str) -> dict[str, Any]:
        if name == ASK:
            return ask(args.model, args.threads, args.tokens, ask_home, env)
        v = next(v for v in VARIANTS if v.name == name)
        return gui.reply(tokens_view=v.tokens_view, switch_ms=v.switch_ms, max_tokens=args.tokens)

    once(ASK)  # warm-up: page cache, probe verdict
    gui.reply(tokens_view=False, max_tokens=min(args.tokens, 32))
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(once(name))
    base = [x["decode_tps"] for x in results[ASK]]
    same = {
        name: sum(
            str(x.get("text", x.get("reply"))).strip() == str(y["reply"]).strip()
            for x, y in zip(runs, results[ASK], strict=True)
        )
        for name, runs in results.items()
    }
    model = args.model.name
    tokens = statistics.median(x["completion_tokens"] for x in results[ASK])
    print(
        f"{model}: {args.rounds} rounds, replies of {tokens:.0f} of at most {args.tokens} "
        f"tokens, {args.threads} threads, seed {SEED}, window {args.window[0]}x{args.window[1]}; "
        f"{os.cpu_count()} CPUs on this machine"
    )
    print(f"  {ASK:<32} decode {spread(base, '.1f')} tok/s")
    for v in VARIANTS:
        runs = results[v.name]
        stats = [x["decode_tps"] for x in runs]
        walls = [x["wall_tps"] or float("nan") for x in runs]
        print(f"  {v.name:<32} decode {spread(stats, '.1f')} tok/s (stats), ", end="")
        print(f"{spread(walls, '.1f')} (wall, first to last chunk in the GUI)")
        by_stats, by_wall = ratios(stats, base), ratios(walls, base)
        print(f"    vs ask: stats {spread(by_stats)}   wall {spread(by_wall)}   (target >= 0.97)")

        def per_token(key: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [(x.get(key) or 0.0) / max(1, x["completion_tokens"]) * 1e6 for x in runs]
            return spread(values, ".0f")

        names = sorted(
            {k for x in runs for k in x.get("host_cpu_s", {})}, key=lambda k: k != "main"
        )
        if names:
            parts = []
            for thread in names:
                values = [
                    x["host_cpu_s"].get(thread, 0.0) / max(1, x["completion_tokens"]) * 1e6
                    for x in runs
                ]
                parts.append(f"{thread} {spread(values, '.0f')}")
            print(f"    engine host CPU per token by thread: {', '.join(parts)} µs")
        print(f"    {wakeups(runs)}")
        print(f"    {waits(runs, results[ASK])}")
        save_ms = [x["save_s"] * 1000 for x in runs]
        print(
            f"    CPU per token: GUI thread {per_token('gui_cpu_s')} µs, inference worker "
            f"{per_token('worker_cpu_s')} µs, whole GUI process {per_token('process_cpu_s')} µs"
        )
        print(
            f"    "
            f"{statistics.median(x['chunks'] for x in runs):.0f} chunks; "
            f"{statistics.median(x['saves'] for x in runs):.0f} saves taking "
            f"{spread(save_ms, '.1f')} ms per reply; same text as ask {same[v.name]}/{len(runs)}"
        )
        summary_row(args.summary, model, f"GUI decode vs ask, {v.name}", spread(by_stats))
    decode_ms = 1000 / statistics.median(base)
    print(
        f"  one decode step takes {decode_ms:.1f} ms here; the GUI process's CPU per token "
        "above, divided by it, is the share of a core the app takes from llama.cpp's threads"
    )
    stall_and_render(args, gui)


def llama_wait(wait: dict[str, float], tokens: int) -> float:
    """µs per token that llama.cpp's threads (the decode loop, "main", and its helpers:
    every thread not named "hearth-...") spent runnable but without a core, summed."""
    waited = sum(v for k, v in wait.items() if not k.startswith("hearth"))
    return waited / max(1, tokens) * 1e6


def waits(runs: list[dict[str, Any]], asks: list[dict[str, Any]]) -> str:
    """How long llama.cpp's threads waited for a core per token in the GUI replies and in
    the same rounds' `hearth ask`, and the difference as a share of a decode step.

    On a machine whose cores llama.cpp's threads fill, a thread that waits stalls the
    other at the next barrier, so the difference bounds from above what the app's threads
    (the window, the worker, the host's sender) take from the decode; unlike the paired
    tokens/s it does not move with the machine's own speed."""
    ours = [llama_wait(x.get("host_wait_s", {}), x["completion_tokens"]) for x in runs]
    base = [llama_wait(a["wait_s"], a["completion_tokens"]) for a in asks]
    extra = [o - b for o, b in zip(ours, base, strict=True)]
    share = [e / (1e6 / a["decode_tps"]) for e, a in zip(extra, asks, strict=True)]
    return (
        f"llama.cpp's threads waited for a core {spread(ours, '.0f')} µs per token, "
        f"in hearth ask {spread(base, '.0f')}; the difference is {spread(share, '.2%')} of a "
        f"decode step (an upper bound on the app's cost: 1 - it = "
        f"{1 - statistics.median(share):.3f})"
    )


def wakeups(runs: list[dict[str, Any]]) -> str:
    """The wake-ups per chunk of the app's threads and how often llama.cpp's threads were
    preempted per token (medians over the runs)."""

    def median(where: str, thread: str, which: int, per: str) -> float:
        return float(
            statistics.median(
                x.get(where, {}).get(thread, (0, 0))[which] / max(1, x[per]) for x in runs
            )
        )

    gui = median("switches", "main", 0, "chunks")
    worker = median("switches", "hearth-inferenc", 0, "chunks")  # Linux keeps 15 characters
    sender = median("host_switches", "hearth-sender", 0, "chunks")
    loop = median("host_switches", "main", 1, "completion_tokens")
    helper = median("host_switches", "python", 1, "completion_tokens")
    return (
        f"wake-ups per chunk: GUI thread {gui:.2f}, inference worker {worker:.2f}, host "
        f"sender {sender:.2f}; llama.cpp's threads preempted per token: decode loop "
        f"{loop:.2f}, its helper {helper:.2f}"
    )


def stall_and_render(args: argparse.Namespace, gui: GuiChild) -> None:
    print(f"  one {args.long_tokens}-token reply per view, 4 ms heartbeat on the GUI thread:")
    for tokens_view in (False, True):
        result = gui.reply(tokens_view=tokens_view, max_tokens=args.long_tokens, heartbeat=True)
        late = sorted(result.get("lateness_ms") or [0.0])
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        cost = render_cost(result)
        shown = "on" if tokens_view else "off"
        line = (
            f"    tokens view {shown}: {result['completion_tokens']} tokens; event loop "
            f"lateness max {late[-1]:.1f} ms, p99 {p99:.1f} ms (target max < 50 ms)"
        )
        if cost is not None:
            line += f"; append per token start {cost[0]:.1f} µs, end {cost[1]:.1f} µs"
        full = result.get("full_gc_ms") or []
        line += f"; full garbage collections {len(full)}" + (
            f" (longest {max(full):.1f} ms)" if full else ""
        )
        print(line)
        # Again without the heartbeat, whose wake-ups cost per second, not per token (and
        # decoding slows as the context grows): the GUI thread's whole cost per token.
        quiet = gui.reply(tokens_view=tokens_view, max_tokens=args.long_tokens)
        whole = render_cost(quiet, "chunk_cpu_s")
        chunks = quiet.get("chunk_cpu_s") or []
        if whole is not None and len(chunks) >= 10:
            k = len(chunks) // 10
            counts = quiet["append_n"]
            print(
                f"      again, no heartbeat: GUI thread CPU per token (arrival to arrival) "
                f"start {whole[0]:.0f} µs, end {whole[1]:.0f} µs; per chunk start "
                f"{statistics.mean(chunks[:k]) * 1e3:.2f} ms ({statistics.mean(counts[:k]):.1f} "
                f"tokens), end {statistics.mean(chunks[-k:]) * 1e3:.2f} ms "
                f"({statistics.mean(counts[len(chunks) - k : len(chunks)]):.1f} tokens)"
            )
            tenths = " ".join(
                f"{statistics.mean(chunks[i * k : (i + 1) * k]) * 1e3:.2f}" for i in range(10)
            )
            scrolled = quiet.get("scroll_from")
            began = (
                f"the chat began scrolling in tenth {min(9, scrolled // k) + 1}"
                if isinstance(scrolled, int)
                else "the chat did not scroll"
            )
            print(f"      per chunk by tenth of the reply: {tenths} ms ({began})")
        summary_row(
            args.summary,
            args.model.name,
            f"GUI stall max, tokens view {shown}",
            f"{late[-1]:.1f} ms",
        )
    full = gui.reply(collect=True)
    print(
        f"  a full garbage collection after them (between replies, as the app runs it): "
        f"{full['ms']:.1f} ms, walking {full['walked']} objects; "
        f"{full['frozen']} frozen once the model loaded are not walked"
    )


if __name__ == "__main__":
    main()
