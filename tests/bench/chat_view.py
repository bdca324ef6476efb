"""Chat view benchmark: streaming cost, opening a long chat, event-loop stalls.

    python -m tests.bench.chat_view [--tokens N] [--window N] [--rounds N] [--messages N]

Offscreen Qt (set QT_QPA_PLATFORM to use another platform). Prints, ours next to a
baseline measured in the same run:

- the cost of one `append_reply_text` call (and the events it causes at once, layout
  included) at the start of one reply vs the end of another 4,000-token reply, measured
  alternately, for prose and for one unbroken paragraph; baseline: re-render the whole
  Markdown per chunk;
- the time to `set_conversation` a 500-message chat until laid out and painted; baseline:
  build every message at once;
- the event loop's lateness (max and p99) with a 4 ms heartbeat while a reply streams at
  ~60 chunks/s (painting included: it runs on the platform's update timer), the longest
  stall when `finish_reply` renders it; baseline: the idle loop's lateness (machine noise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEvent, QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication, QTextBrowser

import app.ui.chat.chat_view as chat_view_module
from app.core.chats.conversation import MessageTree, StoredMessage
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, TopToken
from app.ui.chat.chat_view import ChatView
from app.ui.chat.markdown_render import render_markdown

SETTINGS = SamplingSettings(temperature=0.7, seed=7)
STATS = {
    "completion_tokens": 120,
    "decode_tps": 41.0,
    "ttft_ms": 90.0,
    "stop_reason": "end_of_turn",
}
WORDS = [
    "the",
    "keeper",
    "climbed",
    "narrow",
    "stairs",
    "and",
    "trimmed",
    "wick",
    "once",
    "more",
    "while",
    "storm",
    "outside",
    "pressed",
    "against",
    "glass",
    "lantern",
    "light",
    "swept",
    "across",
    "dark",
    "water",
]
CODE = "```python\ndef light(beam: int) -> str:\n    return f'beam {beam}'\n```\n\n"
REPLY = (
    "The keeper climbed the stairs and **trimmed** the wick once more. "
    "She checked the `lens`, wrote in the log, and watched the sea.\n\n" + CODE
)


def tokens(count: int, paragraph: int | None) -> Iterator[str]:
    """`count` word-sized chunks of prose; a blank line every `paragraph` (None: never)."""
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        if paragraph and i % paragraph == paragraph - 1:
            yield f" {word}.\n\n"
        else:
            yield f" {word}"


def settle(app: QApplication) -> None:
    """Run posted events (layout, deferred deletes, paint) until the queue is quiet."""
    for _ in range(4):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()


def conversation(messages: int) -> tuple[list[StoredMessage], MessageTree]:
    """A linear chat of `messages` messages, replies with Markdown and some code."""
    made: list[StoredMessage] = []
    for i in range(messages):
        if i % 2 == 0:
            made.append(StoredMessage(i + 1, 1, i or None, "user", f"Question {i}: and then?", 0.0))
        else:
            made.append(
                StoredMessage(
                    i + 1, 1, i, "assistant", REPLY, 0.0, settings=SETTINGS, seed=7, stats=STATS
                )
            )
    return made, MessageTree(made)


def new_view(app: QApplication) -> ChatView:
    view = ChatView()
    view.resize(900, 800)
    view.show()
    settle(app)
    return view


def timed_ms(app: QApplication, action: Callable[[], object]) -> float:
    """Wall time in ms of `action` plus the events (layout, paint) it causes."""
    start = time.perf_counter()
    action()
    app.processEvents()
    return (time.perf_counter() - start) * 1000


def streaming_view(app: QApplication, prefill: list[str]) -> ChatView:
    """A shown view streaming reply 100, already `prefill` chunks into it."""
    view = new_view(app)
    path, tree = conversation(4)
    view.set_conversation(path, tree)
    view.begin_reply(StoredMessage(100, 1, 4, "assistant", "", 0.0, status="streaming"))
    for chunk in prefill:
        view.append_reply_text(100, chunk)
    settle(app)
    return view


def streaming_cost(app: QApplication, n_tokens: int, window: int, paragraph: int | None) -> None:
    """A chunk at the start of one reply vs at the end of another, measured alternately."""
    chunks = list(tokens(n_tokens, paragraph))
    early = streaming_view(app, [])
    late = streaming_view(app, chunks[: n_tokens - window])
    starts: list[float] = []
    ends: list[float] = []
    for first, last in zip(chunks[:window], chunks[-window:], strict=True):
        starts.append(timed_ms(app, partial(early.append_reply_text, 100, first)))
        ends.append(timed_ms(app, partial(late.append_reply_text, 100, last)))
    start, end = statistics.median(starts), statistics.median(ends)
    early.close()
    late.close()
    settle(app)

    # Baseline: re-render the whole Markdown into one document per chunk.
    render = render_markdown.__wrapped__
    browsers = []
    for _ in range(2):
        browser = QTextBrowser()
        browser.resize(860, 800)
        browser.show()
        browsers.append(browser)
    texts: list[list[str]] = [[], list(chunks[: n_tokens - window])]

    def naive(which: int, chunk: str) -> None:
        texts[which].append(chunk)
        browsers[which].setHtml(render("".join(texts[which]), False).html)
        bar = browsers[which].verticalScrollBar()
        bar.setValue(bar.maximum())

    base_starts: list[float] = []
    base_ends: list[float] = []
    for first, last in zip(chunks[:window], chunks[-window:], strict=True):
        base_starts.append(timed_ms(app, partial(naive, 0, first)))
        base_ends.append(timed_ms(app, partial(naive, 1, last)))
    base_start, base_end = statistics.median(base_starts), statistics.median(base_ends)
    for browser in browsers:
        browser.close()
    kind = f"paragraphs of {paragraph} tokens" if paragraph else "one unbroken paragraph"
    print(
        f"append_reply_text, {n_tokens:,}-token reply, {kind} "
        f"(median of {window} chunks, start and end measured alternately):"
    )
    print(f"  ours:     start {start:7.3f} ms   end {end:7.3f} ms   end/start {end / start:5.2f}")
    print(
        f"  baseline: start {base_start:7.3f} ms   end {base_end:7.3f} ms   "
        f"end/start {base_end / base_start:5.2f}   (re-render all Markdown per chunk)"
    )


def open_cost(app: QApplication, messages: int, rounds: int) -> None:
    path, tree = conversation(messages)
    view = new_view(app)
    view.set_conversation(path[:4], MessageTree(path[:4]))  # warm caches and imports
    settle(app)

    def open_once() -> float:
        view.set_conversation((), MessageTree(()))
        settle(app)
        start = time.perf_counter()
        view.set_conversation(path, tree)
        settle(app)
        return (time.perf_counter() - start) * 1000

    ours = statistics.median(open_once() for _ in range(rounds))
    built = len(view.built_message_ids())
    saved = chat_view_module.INITIAL_BLOCKS
    chat_view_module.INITIAL_BLOCKS = messages
    try:
        eager = statistics.median(open_once() for _ in range(2))
    finally:
        chat_view_module.INITIAL_BLOCKS = saved
    view.close()
    settle(app)
    print(f"set_conversation, {messages} messages (median of {rounds}, until painted):")
    print(f"  ours:     {ours:7.1f} ms  ({built} messages built, older ones on scroll)")
    print(f"  baseline: {eager:7.1f} ms  (all {messages} built)   ours/baseline {ours / eager:.2f}")


class Heartbeat:
    """A fast timer that records how late each tick is (the event loop's stalls)."""

    def __init__(self, interval_ms: int = 4) -> None:
        self.interval_ms = interval_ms
        self.lateness: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        elapsed = self._clock.nsecsElapsed() / 1e6
        self._clock.restart()
        self.lateness.append(max(0.0, elapsed - self.interval_ms))


def idle_lateness(app: QApplication, seconds: float) -> list[float]:
    """The heartbeat's lateness with nothing else to do (this machine's own noise)."""
    loop = QEventLoop()
    beat = Heartbeat()
    beat.start()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    loop.exec()
    beat.stop()
    return sorted(beat.lateness)


def max_p99(late: list[float]) -> tuple[float, float]:
    ordered = sorted(late)
    return ordered[-1], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def record_of(index: int, word: str) -> TokenRecord:
    """A token record like the engine's: the word, its log-probability and 10 rivals."""
    top = tuple(TopToken(index * 10 + k, f"alt{k}".encode(), -1.0 - k) for k in range(10))
    return TokenRecord(index, word.encode(), -0.2 - (index % 7) * 0.4, top)


def stall(app: QApplication, n_tokens: int, per_chunk: int, tokens_view: bool = False) -> None:
    view = new_view(app)
    view.set_tokens_default(tokens_view)
    path, tree = conversation(40)
    view.set_conversation(path, tree)
    settle(app)
    reply = StoredMessage(100, 1, 40, "assistant", "", 0.0, status="streaming")
    view.begin_reply(reply)
    words = list(tokens(n_tokens, 60))
    chunks = ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]
    records = [record_of(i, w) for i, w in enumerate(words)]
    record_chunks = [records[i : i + per_chunk] for i in range(0, len(records), per_chunk)]
    loop = QEventLoop()
    beat = Heartbeat()
    feeder = QTimer()
    feeder.setTimerType(Qt.TimerType.PreciseTimer)
    feeder.setInterval(16)
    pending = iter(zip(chunks, record_chunks, strict=True))
    marks: dict[str, int] = {}

    def feed() -> None:
        item = next(pending, None)
        if item is not None:
            chunk, batch = item
            if tokens_view:
                view.append_token_records(100, batch)
            view.append_reply_text(100, chunk)
            return
        feeder.stop()
        marks["finish"] = len(beat.lateness)
        done = StoredMessage(
            100, 1, 40, "assistant", "".join(chunks), 0.0, settings=SETTINGS, seed=7, stats=STATS
        )
        view.finish_reply(done)
        QTimer.singleShot(500, loop.quit)  # the finished reply's layout and paint

    feeder.timeout.connect(feed)
    beat.start()
    feeder.start()
    started = time.perf_counter()
    loop.exec()
    seconds = time.perf_counter() - started - 0.5
    beat.stop()
    view.close()
    settle(app)
    streaming, finishing = beat.lateness[: marks["finish"]], beat.lateness[marks["finish"] :]
    worst, p99 = max_p99(streaming)
    finish_worst, _ = max_p99(finishing)
    idle_worst, idle_p99 = max_p99(idle_lateness(app, min(seconds, 5.0)))
    shown = "tokens view open" if tokens_view else "Markdown view"
    print(
        f"event loop while streaming {n_tokens:,} tokens ({shown}) in {len(chunks)} chunks "
        f"({len(chunks) / seconds:.0f} chunks/s, {beat.interval_ms} ms heartbeat):"
    )
    print(f"  ours:     lateness max {worst:6.1f} ms   p99 {p99:6.1f} ms   (target: max < 50 ms)")
    print(f"  baseline: lateness max {idle_worst:6.1f} ms   p99 {idle_p99:6.1f} ms   (idle loop)")
    print(
        f"  finish_reply (Markdown render of the whole reply): longest stall {finish_worst:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    streaming_cost(app, args.tokens, args.window, paragraph=80)
    streaming_cost(app, args.tokens, args.window, paragraph=None)
    open_cost(app, args.messages, args.rounds)
    stall(app, args.tokens, per_chunk=6)
    stall(app, args.tokens, per_chunk=6, tokens_view=True)
    open_with_token_data(app, args.messages, args.rounds)


def open_with_token_data(app: QApplication, messages: int, rounds: int) -> None:
    """Opening a chat whose replies all carry token data, in the real window with the
    tokens view on: each reply built reads its token data from SQLite and draws it."""
    import tempfile
    from pathlib import Path

    from app.core.chats.store import Store
    from app.core.inference.token_data import pack
    from app.core.paths import app_paths
    from app.ui.main_window import MainWindow

    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    paths = app_paths(home).ensure()
    words = list(tokens(120, 60))
    text = "".join(words)
    blob = pack([record_of(i, w) for i, w in enumerate(words)])
    with Store.open(paths) as store:
        chat = store.create_conversation("Long chat with token data")
        other = store.create_conversation("Other")
        store.add_user_message(other.id, "hi")
        for _ in range(messages // 2):
            user = store.add_user_message(chat.id, "A question about lighthouses?")
            reply = store.start_reply(user.id, model="m", settings=SETTINGS)
            store.finish_reply(reply.id, text, "complete", token_data=blob)
    window = MainWindow(paths)
    window.show()
    window.set_tokens_view(True)
    settle(app)

    def open_once() -> float:
        window.open_conversation(other.id)
        settle(app)
        start = time.perf_counter()
        window.open_conversation(chat.id)
        settle(app)
        return (time.perf_counter() - start) * 1000

    times = [open_once() for _ in range(rounds)]
    window.close()
    settle(app)
    print(
        f"open a {messages}-message chat whose replies carry token data, tokens view on "
        f"(real window, until painted; median of {rounds}):"
    )
    print(f"  ours:     {statistics.median(times):7.1f} ms  (target: under 500 ms)")


if __name__ == "__main__":
    main()
