"""Cost per token of each sampler setting at 49,152 and 262,144 tokens of vocabulary.

    python -m tests.bench.sampler_costs [--rounds 9] [--reps 30] [--threads N]

For each model and each case in `app.core.inference.sampler_costs.CASES` (and its
`PENALTY_CASE`), the chain the engine builds (`SamplerChain`) picks from the same logits
(the prompt's last row, left in the context) `--reps` times per round, as the engine
does (`pick`: only the survivors when top-k allows), and, beside it, as bare llama.cpp
does (`llama_sampler_sample` on the whole row). The median over rounds of the mean µs per
call is printed, with one `llama_decode` of one token for scale, and the `_MEASURED`
literal to paste into app/core/inference/sampler_costs.py.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import llama_cpp

from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampler_chain import SamplerChain
from app.core.inference.sampler_costs import CASES, PENALTY_CASE
from app.core.inference.sampling import SamplingSettings
from app.core.machine.hardware import default_threads
from tests.bench import models

PROMPT = [Message("user", "Tell me a long story about a lighthouse keeper and a storm.")]


def sample_us(
    engine: Engine, settings: SamplingSettings, reps: int, rounds: int, *, whole_row: bool
) -> float:
    ctx = engine._ctx
    chain = SamplerChain(settings, 1234, engine._n_vocab, engine.n_ctx)
    row = engine._last_logits()
    try:
        per_round = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                if whole_row:
                    llama_cpp.llama_sampler_sample(chain._chain, ctx, -1)
                else:
                    chain.pick(row, ctx)
            per_round.append((time.perf_counter() - t0) / reps * 1e6)
        return statistics.median(per_round)
    finally:
        chain.close()


def decode_us(engine: Engine, rounds: int) -> float:
    times = []
    base = len(engine._kv_tokens)
    for _ in range(rounds):
        t0 = time.perf_counter()
        rc = engine._decode([engine._kv_tokens[-1]])
        times.append((time.perf_counter() - t0) * 1e6)
        assert rc == 0
        engine._kv_tokens.append(engine._kv_tokens[-1])
    engine._truncate_kv(base)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--gpu-layers", type=int, default=None)
    args = parser.parse_args()
    cases = {**CASES, "penalties": PENALTY_CASE}
    table: dict[str, list[float]] = {key: [] for key in cases}
    whole: dict[str, list[float]] = {key: [] for key in cases}
    decodes = []
    for path in (models.smollm2(), models.gemma3_270m()):
        engine = Engine()
        engine.load(
            path, LoadOptions(n_ctx=2048, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
        )
        try:
            greedy = SamplingSettings(temperature=0.0, max_tokens=1)
            list(engine.generate(PROMPT, greedy))  # prompt read; its logits stay in the context
            decodes.append(decode_us(engine, args.rounds))
            list(engine.generate(PROMPT, greedy))  # a cached rerun restores the prompt's row
            n_vocab = engine._n_vocab
            for key, settings in cases.items():
                for out, flag in ((table, False), (whole, True)):
                    out[key].append(
                        sample_us(engine, settings, args.reps, args.rounds, whole_row=flag)
                    )
        finally:
            engine.close()
        print(f"{path.name}: {n_vocab:,} tokens")
    print(
        f"{'setting':<18} {'49k µs':>10} {'262k µs':>10} {'262k vs top-k 40':>18}"
        f"   llama.cpp whole row: {'49k µs':>10} {'262k µs':>10}"
    )
    for key, (small, large) in table.items():
        extra = large - table["top_k"][1]
        bare_small, bare_large = whole[key]
        print(
            f"{key:<18} {small:10.1f} {large:10.1f} {extra:+15.1f} µs"
            f"{'':>24}{bare_small:10.1f} {bare_large:10.1f}"
        )
    print(f"{'llama_decode (1)':<18} {decodes[0]:10.1f} {decodes[1]:10.1f}")
    print(
        f'\nMEASURED_ON = "{platform.machine()}, {args.threads} threads, median of {args.rounds}"'
    )
    print("_MEASURED: dict[str, tuple[float, float]] = {")
    for key, (small, large) in table.items():
        print(f'    "{key}": ({small:.0f}, {large:.0f}),')
    print("}")


if __name__ == "__main__":
    main()
