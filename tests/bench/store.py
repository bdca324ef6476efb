"""Store benchmark: ours vs bare sqlite3 on the same file, measured alternately in one run.

    python -m tests.bench.store [--messages N] [--rounds N]

Prints medians and ratios for: opening a 500-message conversation (its messages as a tree
and the active path, vs a bare SELECT of the same rows) and saving a streaming reply
(`update_streaming_reply` with ~4,000 tokens of text, vs a bare UPDATE).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.core.chats.store import DB_FILE_NAME, Store
from app.core.inference.events import GenerationStats, StopReason
from app.core.inference.sampling import SamplingSettings

SETTINGS = SamplingSettings(temperature=0.7)
STATS = GenerationStats(
    prompt_tokens=900,
    cached_tokens=800,
    prefill_ms=40.0,
    prefill_tps=2500.0,
    ttft_ms=45.0,
    completion_tokens=120,
    decode_ms=3000.0,
    decode_tps=40.0,
    stop_reason=StopReason.END_OF_TURN,
    seed=1,
)
REPLY_TEXT = "The keeper climbed the stairs and trimmed the wick once more. " * 10
STREAMED_TEXT = "token " * 4000


def medians_ms(
    ours: Callable[[], object], baseline: Callable[[], object], rounds: int
) -> tuple[float, float]:
    """Median wall times in ms of two actions, run alternately so drift hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for action, sink in ((ours, times[0]), (baseline, times[1])):
            start = time.perf_counter()
            action()
            sink.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def fill(store: Store, messages: int) -> tuple[int, int]:
    """A conversation of `messages` messages; returns its id and a streaming reply's id."""
    chat = store.create_conversation("long")
    with store.transaction():
        for i in range(messages // 2):
            user = store.add_user_message(chat.id, f"Question {i}: what happened next?")
            reply = store.start_reply(user.id, model="tiny.gguf", settings=SETTINGS)
            store.finish_reply(reply.id, REPLY_TEXT, "complete", stats=STATS)
    other = store.create_conversation("streaming")
    user = store.add_user_message(other.id, "Write a long story.")
    streaming = store.start_reply(user.id, model="tiny.gguf", settings=SETTINGS)
    return chat.id, streaming.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / DB_FILE_NAME
        with Store(path) as store:
            chat_id, reply_id = fill(store, args.messages)
            bare = sqlite3.connect(path, isolation_level=None)
            bare.execute("PRAGMA synchronous = NORMAL")

            def bare_load() -> list[object]:
                return bare.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (chat_id,)
                ).fetchall()

            def ours_load() -> int:
                return len(store.snapshot(chat_id).path)

            def bare_update() -> None:
                bare.execute(
                    "UPDATE messages SET content = ? WHERE id = ?", (STREAMED_TEXT, reply_id)
                )

            def ours_update() -> None:
                store.update_streaming_reply(reply_id, STREAMED_TEXT)

            assert ours_load() == args.messages
            rows = [
                ("open conversation", ours_load, bare_load),
                ("save streaming reply", ours_update, bare_update),
            ]
            print(f"{args.messages} messages, median of {args.rounds} (ms)")
            print(f"{'':24}{'ours':>10}{'bare':>10}{'ratio':>8}")
            for label, ours, baseline in rows:
                ours_ms, bare_ms = medians_ms(ours, baseline, args.rounds)
                print(f"{label:24}{ours_ms:10.3f}{bare_ms:10.3f}{ours_ms / bare_ms:8.2f}")
            bare.close()


if __name__ == "__main__":
    main()
