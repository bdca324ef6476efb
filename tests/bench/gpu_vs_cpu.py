"""Decode and prefill tokens/s with every layer on the GPU vs none, alternated in one run.

    python -m tests.bench.gpu_vs_cpu [--models smollm2,gemma3] [--rounds 9] [--tokens 128]
                                     [--summary FILE]

Two engines per model (n_gpu_layers -1 and 0, same threads and context) generate the same
greedy reply in turn; prints paired medians and ranges of GPU/CPU.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.machine.hardware import default_threads
from tests.bench import models
from tests.bench.host_time import SAMPLING, engine_run, summary_row


def bench_model(path: Path, args: argparse.Namespace) -> None:
    engines = {}
    for name, layers in (("gpu", -1), ("cpu", 0)):
        engine = Engine()
        engine.load(path, LoadOptions(n_ctx=4096, n_threads=args.threads, n_gpu_layers=layers))
        engines[name] = engine
    runs: dict[str, list[tuple[float, float]]] = {"gpu": [], "cpu": []}
    try:
        settings = SAMPLING["greedy"]
        for engine in engines.values():
            engine_run(engine, settings, 8)
        for r in range(args.rounds):
            for name in ("gpu", "cpu") if r % 2 == 0 else ("cpu", "gpu"):
                run = engine_run(engines[name], settings, args.tokens)
                runs[name].append((run.prefill_tps, run.decode_tps))
    finally:
        for engine in engines.values():
            engine.close()
    print(f"{path.name}: gpu layers -1 vs 0, {args.rounds} rounds, {args.threads} threads")
    for i, metric in enumerate(("prefill tok/s", "decode tok/s")):
        gpu = [x[i] for x in runs["gpu"]]
        cpu = [x[i] for x in runs["cpu"]]
        ratios = [g / c for g, c in zip(gpu, cpu, strict=True)]
        line = (
            f"gpu {statistics.median(gpu):.0f} vs cpu {statistics.median(cpu):.0f}: "
            f"x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
        print(f"  {metric:<14} {line}")
        summary_row(args.summary, path.name, f"GPU vs CPU {metric}", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--summary", type=Path, default=None)
    args = parser.parse_args()
    paths = {"smollm2": models.smollm2, "gemma3": models.gemma3_270m}
    for name in args.models.split(","):
        bench_model(paths[name](), args)


if __name__ == "__main__":
    main()
