"""Sampling explorer benchmark: one re-application of the chain per slider step.

    python -m tests.bench.explorer [--rounds N]

For vocabularies of 49,152 and 262,144 entries (random logits: "peaked" like a model
that is fairly sure, "flat" like one that is not), sweeps temperature, top-p, top-k,
min-p and typical-p as a slider drag would and prints the median and max time of
`ExplorerRow.explore` (the whole redraw computation: the chain, the candidate table, the
entropy, the pick). The budget is 16 ms per step.

Then it measures what llama.cpp's own chain costs per token (`llama_sampler_apply` on the
whole vocabulary) for the settings the explorer warns about, next to the default chain:
figures comparable to `app/core/inference/sampler_costs.py`.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from app.core.inference.explorer import ExplorerRow
from app.core.inference.sampling import SamplingSettings

BASE = SamplingSettings(seed=7)


def row_of(n: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(n)
    if kind == "flat":
        return (rng.normal(size=n) * 3.0).astype(np.float32)
    logits = rng.normal(size=n).astype(np.float32) * 2.0
    logits[rng.choice(n, 12, replace=False)] += np.linspace(24.0, 14.0, 12, dtype=np.float32)
    return logits


def sweep() -> Iterator[SamplingSettings]:
    for t in np.linspace(0.0, 2.0, 21):
        yield BASE.with_changes(temperature=float(round(t, 2)))
    for p in np.linspace(0.05, 1.0, 20):
        yield BASE.with_changes(top_k=0, top_p=float(round(p, 2)))
    for k in (0, 1, 5, 10, 20, 40, 80, 160, 1000):
        yield BASE.with_changes(top_k=k)
    for m in np.linspace(0.0, 0.5, 11):
        yield BASE.with_changes(top_k=0, top_p=1.0, min_p=float(round(m, 2)))
    for y in (1.0, 0.95, 0.8, 0.5, 0.2):
        yield BASE.with_changes(top_k=0, typical_p=y)


def bench_explorer(rounds: int) -> None:
    print("explore() per slider step (ms), budget 16 ms")
    for n in (49_152, 262_144):
        for kind in ("peaked", "flat"):
            row = ExplorerRow(row_of(n, kind), history=list(range(64)), n_ctx=4096)
            times: list[float] = []
            worst = ("", 0.0)
            for _ in range(rounds):
                for settings in sweep():
                    t0 = time.perf_counter()
                    row.explore(settings)
                    ms = (time.perf_counter() - t0) * 1000
                    times.append(ms)
                    if ms > worst[1]:
                        worst = (_describe(settings), ms)
            print(
                f"  {n:>7,} {kind:6}: median {statistics.median(times):5.2f}  "
                f"max {max(times):6.2f}  (steps {len(times)}; slowest: {worst[0]})"
            )


def _describe(s: SamplingSettings) -> str:
    return f"T={s.temperature} k={s.top_k} p={s.top_p} min_p={s.min_p} typ={s.typical_p}"


def native_ms(logits: np.ndarray, settings: SamplingSettings, rounds: int) -> float:
    """Median ms of llama.cpp's chain (as `SamplerChain` builds it) on one row."""
    import llama_cpp

    from app.core.inference.sampler_chain import SamplerChain

    dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
    n = logits.size
    times: list[float] = []
    with SamplerChain(settings, 7, n, 4096) as chain:
        native: Any = chain._chain  # the bench times the very chain
        for _ in range(rounds):
            data = np.empty(n, dtype=dtype)
            data["id"] = np.arange(n, dtype=np.int32)
            data["logit"] = logits
            data["p"] = 0.0
            pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
            array = llama_cpp.llama_token_data_array(pointer, n, -1, False)
            t0 = time.perf_counter()
            llama_cpp.llama_sampler_apply(native, ctypes.byref(array))
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


COSTLY = {
    "default (top-k 40, top-p 0.95, min-p 0.05)": BASE,
    "top-k 0, top-p 0.95": BASE.with_changes(top_k=0, top_p=0.95, min_p=0.0),
    "top-k 0, top-p 0.95, min-p 0.05": BASE.with_changes(top_k=0, top_p=0.95),
    "top-k 0, top-p 1, min-p 0.05": BASE.with_changes(top_k=0, top_p=1.0),
    "top-k 0, top-p 1, min-p 0": BASE.with_changes(top_k=0, top_p=1.0, min_p=0.0),
    "top-k 0, typical-p 0.9": BASE.with_changes(top_k=0, typical_p=0.9),
}


def bench_native(rounds: int) -> None:
    print("llama.cpp's chain per token (ms, median), what generation pays")
    for n in (49_152, 262_144):
        for kind in ("peaked", "flat"):
            logits = row_of(n, kind)
            for name, settings in COSTLY.items():
                print(f"  {n:>7,} {kind:6} {name:42}: {native_ms(logits, settings, rounds):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench_explorer(args.rounds)
    bench_native(max(5, args.rounds * 5))


if __name__ == "__main__":
    main()
