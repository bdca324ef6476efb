"""What wake-ups of another thread cost llama.cpp's decode when its threads take every core.

    python -m tests.bench.wakeup_cost [--model PATH] [--rounds 8] [--tokens 384] [--threads N]
                                      [--quick]

Each round runs `hearth ask --json` (the same prompt, seed and settings as
`tests.bench.gui_path`) alone, and alongside a process that sleeps and wakes N times a
second and works W µs each time, for a few (N, W); the order rotates every round. Printed
per setting: decode tok/s, the paired ratio against `ask` alone (median and range), the
share of a core the waker used (N x W), and the decode time lost per wake-up.

Why: while a reply streams, the app's own threads (the window, the inference worker, the
engine host's sender) wake once or more per refresh. With llama.cpp's threads on every
core, each wake-up preempts one of them while the other may spin at the next barrier.
The settings put many cheap wake-ups against few costly ones at a similar share of a core,
so the bench tells whether the number of wake-ups costs decode apart from the CPU they use
(`tests.bench.gui_path` counts them per chunk). The rates are far above the app's (tens a
second) so that an effect stands above a noisy machine's spread.

`--quick` is a smoke run: one round of 16 tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.bench.gui_path import ask, positive, ratios, spread

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ((0, 0), (2000, 5), (1000, 20), (50, 400))
"""(wake-ups a second, µs of work each): the first is `ask` alone."""

WAKER = """
import sys, time
period, work = 1.0 / float(sys.argv[1]), float(sys.argv[2]) / 1e6
while True:
    time.sleep(period)
    start = time.perf_counter()
    while time.perf_counter() - start < work:
        pass
"""


@contextlib.contextmanager
def waking(rate: int, work_us: int) -> Iterator[subprocess.Popen[bytes] | None]:
    """A process that wakes `rate` times a second (none for 0) while the block runs."""
    if not rate:
        yield None
        return
    waker = subprocess.Popen([sys.executable, "-c", WAKER, str(rate), str(work_us)])
    try:
        time.sleep(0.3)  # it is waking before the model loads
        yield waker
    finally:
        waker.kill()
        waker.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.cli.common import some_threads
    from app.core.machine.hardware import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the starter model")
    parser.add_argument("--rounds", type=positive, default=8)
    parser.add_argument("--tokens", type=positive, default=384, help="reply length to time")
    parser.add_argument("--threads", type=some_threads, default=default_threads())
    parser.add_argument("--quick", action="store_true", help="1 round of 16 tokens (smoke)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.tokens = 1, 16
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file; give the path of a .gguf model")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.model is None:
        from tests.bench.models import smollm2

        args.model = smollm2()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("HEARTH_PROBE_CACHE", str(REPO / "tests" / ".cache" / "probe"))
    env.pop("HEARTH_HOME", None)
    results: dict[tuple[int, int], list[float]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="hearth-wakeup-") as scratch:
        home = Path(scratch)

        def once() -> dict[str, Any]:
            return ask(args.model, args.threads, args.tokens, home, env)

        once()  # warm-up: page cache, probe verdict
        for r in range(args.rounds):
            for rate, work in SETTINGS[r % len(SETTINGS) :] + SETTINGS[: r % len(SETTINGS)]:
                with waking(rate, work):
                    result = once()
                results[(rate, work)].append(float(result["decode_tps"]))
    alone = results[SETTINGS[0]]
    print(
        f"{args.model.name}: {args.rounds} rounds of `hearth ask` ({args.tokens} tokens, "
        f"{args.threads} threads) alone and beside a waker; {os.cpu_count()} CPUs here"
    )
    print(f"  alone                              decode {spread(alone, '.1f')} tok/s")
    for rate, work in SETTINGS[1:]:
        tps = results[(rate, work)]
        by = ratios(tps, alone)
        lost_us = (1 - statistics.median(by)) / rate * 1e6
        print(
            f"  {rate:4d} wake-ups/s x {work:3d} µs work  decode {spread(tps, '.1f')} tok/s; "
            f"vs alone {spread(by)}; the waker used {rate * work / 1e4:.1f}% of a core; "
            f"decode lost per wake-up {lost_us:.0f} µs"
        )


if __name__ == "__main__":
    main()
