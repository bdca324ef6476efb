"""`hearth serve` benchmark: concurrent streaming clients, one-by-one vs batched, in one run.

    python -m tests.bench.serve [--model PATH] [--threads N] [--tokens N] [--parallel N]

Starts the server core in this process twice (one reply at a time, then `--parallel`
replies batched in one context) and prints, for each, the aggregate completion tokens/s of
1, 2 and 4 concurrent streaming clients and their ratio to one client, then the time to
first token of a client arriving while three others stream vs the same client alone.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx

from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.machine.hardware import default_threads
from app.core.server.app import ServerConfig
from app.core.server.handle import ServerHandle
from app.core.server.scheduler import ModelFacts, Scheduler, describe_loaded
from tests.conftest import MODEL_CACHE
from tests.core.server.conftest import probed

TOPICS = ["a lighthouse", "a dragon", "a robot", "a city", "the sea", "a forest"]


class Bench:
    def __init__(self, model: Path, threads: int, parallel: int, tokens: int) -> None:
        def opener(engine: Engine) -> ModelFacts:
            engine.load(model, probed(model, LoadOptions(n_ctx=2048, n_threads=threads)))
            return describe_loaded(engine)

        self.tokens = tokens
        self.scheduler = Scheduler(opener, queue_size=16, parallel=parallel)
        self.scheduler.start()
        self.handle = ServerHandle(self.scheduler, ServerConfig(port=0))
        self.url = self.handle.start()
        self.scheduler.wait_loaded()
        assert self.scheduler.model is not None
        self.model = self.scheduler.model.id

    def stream(self, topic: str, max_tokens: int | None = None) -> tuple[int, float]:
        """Stream one story; return (completion tokens, seconds to the first content)."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"Write a long story about {topic}."}],
            "temperature": 0,
            "max_tokens": max_tokens or self.tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        ttft = 0.0
        used = 0
        with httpx.stream("POST", self.url + "/chat/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    used = chunk["usage"]["completion_tokens"]
                elif not ttft and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - start
        return used, ttft

    def aggregate(self, clients: int) -> float:
        """Completion tokens/s of `clients` streaming at once."""
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(self.stream, TOPICS[:clients]))
        return sum(n for n, _ in results) / (time.perf_counter() - start)

    def ttft_under_load(self) -> tuple[float, float]:
        """TTFT of a client alone, and while three others stream."""
        _, alone = self.stream(TOPICS[4], 4)
        others = [
            threading.Thread(target=self.stream, args=(t, self.tokens * 2)) for t in TOPICS[:3]
        ]
        for t in others:
            t.start()
        time.sleep(1.0)  # let the three get past their prompts
        _, loaded = self.stream(TOPICS[4], 4)
        for t in others:
            t.join()
        return alone, loaded

    def close(self) -> None:
        self.scheduler.cancel_all()
        self.handle.stop()
        self.scheduler.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    from app.core.models.starter import install_starter

    model = args.model or install_starter(MODEL_CACHE)
    print(f"model {model.name}, {args.threads} threads, {args.tokens} tokens per reply")
    for parallel in (1, args.parallel):
        bench = Bench(model, args.threads, parallel, args.tokens)
        try:
            bench.aggregate(1)  # warm up
            rates = {n: bench.aggregate(n) for n in (1, 2, 4)}
            alone, loaded = bench.ttft_under_load()
        finally:
            bench.close()
        kind = "one by one" if parallel == 1 else f"--parallel {parallel}"
        line = ", ".join(
            f"{n} clients {r:6.1f} tok/s ({r / rates[1]:.2f}x)" for n, r in rates.items()
        )
        print(f"{kind:>12}: {line}")
        print(
            f"{'':>12}  TTFT alone {alone * 1000:.0f} ms, "
            f"with three streaming {loaded * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
