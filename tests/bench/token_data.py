"""Token data benchmark: decode speed with token data kept vs without, and bytes per token.

    python -m tests.bench.token_data [--model PATH] [--threads N] [--rounds N] [--tokens N]

"Kept": the engine gives the top-10 alternatives, every token becomes a `TokenRecord`
(as the inference worker makes them) and a `ReplyWriter` saves text and packed records to a
real SQLite file at most every 0.5 s, all on the decoding thread (the app packs on the GUI
thread, so this is the worst case). "Without": top_n=0 and a writer that keeps text only.
The two alternate (ABBA order) in one run; the ratio is taken per pair of rounds and its
median and range printed. Bytes per token: the finished reply's single chunk, and the sum of
the chunks the streaming saves wrote before it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import Store
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import record_from_event
from app.core.machine.hardware import default_threads
from tests.conftest import MODEL_CACHE

STORY = [Message("user", "Tell me a long story about a lighthouse keeper and a storm.")]


def one_reply(
    engine: Engine, store: Store, settings: SamplingSettings, keep: bool
) -> dict[str, float]:
    chat = store.create_conversation("bench")
    user = store.add_user_message(chat.id, STORY[0].content)
    reply = store.start_reply(user.id, model="bench", settings=settings)
    writer = ReplyWriter(store, reply.id, interval=0.5)
    token_bytes = engine.token_bytes
    result: dict[str, float] = {}
    for event in engine.generate(STORY, settings, top_n=10 if keep else 0):
        if isinstance(event, TokenEvent):
            if keep:
                writer.append(event.text, (record_from_event(event, token_bytes),))
            else:
                writer.append(event.text)
        elif isinstance(event, GenerationDone):
            writer.flush()
            streaming = sum(len(c) for c in store.packed_token_data(reply.id))
            writer.finish_generation(event, settings=settings)
            final = sum(len(c) for c in store.packed_token_data(reply.id))
            n = max(event.stats.completion_tokens, 1)
            result = {
                "tps": event.stats.decode_tps,
                "tokens": event.stats.completion_tokens,
                "final_bpt": final / n,
                "streaming_bpt": streaming / n,
            }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", type=Path, default=MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--rounds", type=int, default=9, help="pairs of replies (at least 9)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per reply")
    args = parser.parse_args(argv)
    settings = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=args.tokens)

    engine = Engine()
    engine.load(args.model, LoadOptions(n_ctx=2048, n_threads=args.threads))
    kept: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.sqlite3") as store:
        one_reply(engine, store, settings, True)  # warm-up
        for i in range(max(args.rounds, 1)):
            order = (True, False) if i % 2 == 0 else (False, True)  # ABBA
            for keep in order:
                (kept if keep else without).append(one_reply(engine, store, settings, keep))
    engine.close()

    ratios = [k["tps"] / w["tps"] for k, w in zip(kept, without, strict=True) if w["tps"] > 0]
    kept_tps = statistics.median(r["tps"] for r in kept)
    without_tps = statistics.median(r["tps"] for r in without)
    final = statistics.median(r["final_bpt"] for r in kept)
    streaming = statistics.median(r["streaming_bpt"] for r in kept)
    print(
        f"model {args.model.name}, {args.threads} threads, {len(kept)} rounds, "
        f"{int(kept[0]['tokens'])} tokens per reply (greedy)"
    )
    print(f"decode tok/s, token data kept (top 10):   median {kept_tps:.1f}")
    print(f"decode tok/s, without (top 0, text only): median {without_tps:.1f}")
    print(
        f"ratio kept/without per pair: median {statistics.median(ratios):.3f}, "
        f"range {min(ratios):.3f}-{max(ratios):.3f}"
    )
    print(
        f"bytes stored per token: finished {final:.1f}, while streaming {streaming:.1f} "
        "(one chunk per save)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
