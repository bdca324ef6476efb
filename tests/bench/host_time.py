"""Host time per token and engine vs bare llama-cpp-python, at 49,152 and 262,144 tokens.

    python -m tests.bench.host_time [--models smollm2,gemma3] [--rounds 9] [--tokens 128]
                                    [--threads N] [--before REV] [--sampling greedy|default]
                                    [--modes auto,inline,overlap]

For each model, in one run and alternating each round, it generates the same reply with:
  * the engine (token data included: probability and top-10 of every token), in each mode
    of `Engine.token_data_mode` asked for;
  * the engine in the engine host (a child process, as the app runs it; `--host`), with
    its reply's own stats, measured in the host;
  * with `--before REV`, the engine as of git revision REV, loaded from git into a module
    of its own (its engine.py and token_probs.py over today's other modules: only a
    revision whose engine still fits them runs; none by default);
  * a bare loop on the engine's own context: `llama_decode` of the prompt in n_batch
    chunks, then `llama_sampler_sample` with the same native chain + `llama_decode` of
    one token.
`llama_cpp.llama_decode` is wrapped for the run, so the time inside it is known exactly:
host time per token = (decode-phase wall time - time inside llama_decode) / decodes.
It prints paired medians and ranges of the decode and prefill ratios to the bare loop,
host µs/token, for engines in this process the time inside `llama_decode` against the bare
loop's and the decode ratio at a shared step (`shared_step_lines`), and a breakdown of the
engine's per-token host work measured on the model's own logits (probabilities,
alternatives, text, event, row copy, helper hand-off).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from app.core.host.engine_host import EngineHost
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, TokenAlternative, TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.reply_text import ReplyText
from app.core.inference.sampler_chain import SamplerChain
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_facts import TokenFactsHelper
from app.core.inference.token_probs import ProbabilityReader
from app.core.machine.hardware import default_threads
from tests.bench import models

REPO = Path(__file__).resolve().parents[2]
N_CTX = 4096
SEED = 1234


def story(repeat: int = 40) -> list[Message]:
    """The bench prompt: a system prompt of `repeat` sentences (40: ~350 tokens) + a request."""
    return [
        Message(
            "system", "You are a storyteller. " + "Write vivid, long, detailed stories. " * repeat
        ),
        Message("user", "Tell me a long story about a lighthouse keeper and a storm."),
    ]


STORY = story()
COUNTING = [Message("user", "Count from 1 to 300, one number per line.")]
"""A prompt a base model (Gemma 3 270M has no chat template) answers at length, where the
story's system prompt makes it stop after a dozen tokens."""
SAMPLING = {
    "greedy": SamplingSettings(temperature=0.0, repeat_penalty=1.0, seed=SEED),
    "default": SamplingSettings(seed=SEED),
}


class DecodeTimer:
    """Wraps `llama_cpp.llama_decode`; adds the seconds of single-token calls (decodes)
    and of multi-token calls (prefill) while installed."""

    def __init__(self) -> None:
        self.decode_s = 0.0
        self.decodes = 0
        self.prefill_s = 0.0
        self._real: Callable[..., int] = llama_cpp.llama_decode

    def __enter__(self) -> DecodeTimer:
        real, clock = self._real, time.perf_counter

        def timed(ctx: Any, batch: Any) -> int:
            t0 = clock()
            rc = real(ctx, batch)
            dt = clock() - t0
            if batch.n_tokens == 1:
                self.decode_s += dt
                self.decodes += 1
            else:
                self.prefill_s += dt
            return rc

        llama_cpp.llama_decode = timed
        return self

    def __exit__(self, *_exc: object) -> None:
        llama_cpp.llama_decode = self._real


@dataclass
class Run:
    prefill_tps: float
    decode_tps: float
    host_us: float  # host time per decoded token, µs
    tokens: list[int]
    step_us: float = float("nan")  # time inside llama_decode per decoded token, µs


def engine_run(engine: Any, settings: SamplingSettings, n: int) -> Run:
    engine.clear_cache()
    holder = SettingsHolder(settings.with_changes(max_tokens=n))
    with DecodeTimer() as timer:
        events = list(engine.generate(STORY, holder))
    done = events[-1]
    assert isinstance(done, GenerationDone)
    s = done.stats
    decodes = max(timer.decodes, 1)
    host = (s.decode_ms / 1000 - timer.decode_s) / decodes
    step = timer.decode_s / decodes
    return Run(s.prefill_tps, s.decode_tps, host * 1e6, list(done.tokens), step * 1e6)


def host_run(host: EngineHost, settings: SamplingSettings, n: int) -> Run:
    """The reply through the engine host; host µs/token is not known across processes."""
    host.clear_cache()
    holder = SettingsHolder(settings.with_changes(max_tokens=n))
    done = [e for e in host.generate(STORY, holder) if isinstance(e, GenerationDone)][-1]
    s = done.stats
    return Run(s.prefill_tps, s.decode_tps, float("nan"), list(done.tokens))


def bare_run(engine: Engine, prompt: list[int], settings: SamplingSettings, n: int) -> Run:
    """llama_decode + the same native chain on the engine's own context, nothing else."""
    ctx = engine._ctx  # the bench reuses the engine's context: same model, params, memory
    vocab = llama_cpp.llama_model_get_vocab(engine._model)
    engine.clear_cache()
    chain = SamplerChain(settings, SEED, engine._n_vocab, engine.n_ctx)
    chain.remember(prompt)  # the engine's chain starts with the prompt in its penalty window
    n_batch = int(llama_cpp.llama_n_batch(ctx))
    try:
        with DecodeTimer() as timer:
            t0 = time.perf_counter()
            for i in range(0, len(prompt), n_batch):
                chunk = prompt[i : i + n_batch]
                arr = (llama_cpp.llama_token * len(chunk))(*chunk)
                rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
                assert rc == 0
            prefill_s = time.perf_counter() - t0
            tokens: list[int] = []
            t_first = time.perf_counter()
            while True:
                token = llama_cpp.llama_sampler_sample(chain._chain, ctx, -1)
                if not tokens:
                    t_first = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                tokens.append(token)
                if len(tokens) == n:
                    break
                one = (llama_cpp.llama_token * 1)(token)
                rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1))
                assert rc == 0
            decode_s = time.perf_counter() - t_first
    finally:
        chain.close()
        engine._kv_tokens = []  # the bench filled the context behind the engine's back
        engine.clear_cache()
    decodes = max(timer.decodes, 1)
    host = (decode_s - timer.decode_s) / decodes
    step = timer.decode_s / decodes
    decode_tps = (len(tokens) - 1) / decode_s
    return Run(len(prompt) / prefill_s, decode_tps, host * 1e6, tokens, step * 1e6)


def engine_before(rev: str) -> type:
    """The `Engine` class (and its ProbabilityReader) as of git revision `rev`."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout

    probs = types.ModuleType("hearth_before_token_probs")
    exec(compile(source("app/core/inference/token_probs.py"), "before/token_probs", "exec"),
         probs.__dict__)  # fmt: skip
    sys.modules[probs.__name__] = probs
    text = source("app/core/inference/engine.py").replace(
        "from app.core.inference.token_probs import", f"from {probs.__name__} import"
    )
    module = types.ModuleType("hearth_before_engine")
    sys.modules[module.__name__] = module
    exec(compile(text, "before/engine.py", "exec"), module.__dict__)
    return module.Engine  # type: ignore[no-any-return]


def breakdown(engine: Engine, settings: SamplingSettings, reps: int = 200) -> dict[str, float]:
    """µs per token of each piece of the engine's host work, on the model's real logits."""
    engine.clear_cache()
    rows: list[np.ndarray] = []
    ids: list[int] = []
    for event in engine.generate(STORY, settings.with_changes(max_tokens=32)):
        if isinstance(event, TokenEvent):
            rows.append(engine._last_logits().copy())
            ids.append(event.token_id)
    vocab, n = engine._vocab, engine._n_vocab
    assert vocab is not None
    reader = ProbabilityReader(n)
    k = len(rows)

    def per_call(fn: Callable[[int], object]) -> float:
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(reps):
                fn(i % k)
            best.append((time.perf_counter() - t0) / reps * 1e6)
        return statistics.median(best)

    def alternatives(i: int) -> tuple[TokenAlternative, ...]:
        top = reader.read(rows[i])
        return tuple(
            TokenAlternative(j, vocab.token_text(j), lg, p)
            for j, lg, p in zip(
                top.ids.tolist(), top.logits.tolist(), top.probs.tolist(), strict=True
            )
        )

    reply = ReplyText(())
    scratch = np.empty(n, dtype=np.float32)
    out = {
        "probabilities (softmax + top-10)": per_call(lambda i: reader.read(rows[i])),
        "probabilities + alternatives (texts, tuples)": per_call(alternatives),
        "text assembly (token bytes + reply)": per_call(
            lambda i: reply.add(vocab.token_bytes(ids[i]))
        ),
        "event (TokenEvent)": per_call(lambda i: TokenEvent(ids[i], "x", 0.5, ())),
        "logits row copy (overlap mode)": per_call(lambda i: np.copyto(scratch, rows[i])),
        "end-of-turn check": per_call(lambda i: vocab.is_end_of_turn(ids[i])),
    }
    with TokenFactsHelper(vocab, reader, overlap=True) as data:
        out["helper hand-off + compute, nothing overlapped"] = per_call(
            lambda i: data.take(data.submit(rows[i], ids[i]))
        )
    return out


def summary_row(summary: Path | None, model: str, what: str, value: str) -> None:
    """Append one tab-separated row (model, what, value) to `summary` (gpu_check.sh's table)."""
    if summary is not None:
        with summary.open("a", encoding="utf-8") as out:
            out.write(f"{model}\t{what}\t{value}\n")


def ratio_text(ours: list[float], base: list[float]) -> str:
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    return f"{statistics.median(ratios):5.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def ratio_line(name: str, ours: list[float], base: list[float]) -> str:
    return (
        f"    {name:<22} {statistics.median(ours):9.1f} vs {statistics.median(base):9.1f}   "
        f"ratio {ratio_text(ours, base)} (paired median and range)"
    )


def shared_step_lines(runs: list[Run], bare: list[Run]) -> str:
    """The decode ratio with the VM's speed taken out, and the check that allows it.

    Each round's ratio as if `llama_decode` took the bare loop's time in both: (step +
    bare host) / (step + engine host). The tok/s ratio above also carries the drift of
    this machine's speed between the two runs of a round (10-20% on a VM), which the
    paired median only partly cancels; the time inside `llama_decode` itself is printed
    paired too: near 1, the engine's host work does not slow the decodes, and the ratio
    at a shared step is the one its host time sets.
    """
    shared = [
        (b.step_us + b.host_us) / (b.step_us + x.host_us) for x, b in zip(runs, bare, strict=True)
    ]
    steps = [x.step_us for x in runs]
    return "\n".join(
        [
            ratio_line("inside llama_decode µs", steps, [b.step_us for b in bare]),
            f"    {'decode, shared step':<22} ratio {statistics.median(shared):5.3f} "
            f"({min(shared):.3f}-{max(shared):.3f}) (paired median and range)",
        ]
    )


def bench_model(path: Path, args: argparse.Namespace) -> None:
    settings = SAMPLING[args.sampling]
    options = LoadOptions(n_ctx=N_CTX, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    engine = Engine()
    engine.load(path, options)
    variants: dict[str, Callable[[], Run]] = {}
    for mode in args.modes.split(","):

        def run_mode(mode: str = mode) -> Run:
            engine.token_data_mode = mode  # type: ignore[assignment]
            return engine_run(engine, settings, args.tokens)

        variants[f"engine {mode}"] = run_mode
    host: EngineHost | None = None
    if args.host:
        host = EngineHost()
        host.load(path, options)
        hosted = host
        variants["engine host"] = lambda: host_run(hosted, settings, args.tokens)
    before: Any = None
    if args.before:
        before = engine_before(args.before)()
        before.load(path, options)
        variants[f"engine @{args.before}"] = lambda: engine_run(before, settings, args.tokens)
    prompt = list(engine.plan(STORY, args.tokens).tokens)
    n_vocab = engine._n_vocab
    # The engine also stops at stop strings (a template's next-turn marker): the bare loop
    # makes as many tokens as the engine's reply has, so both decode the same tokens.
    engine.token_data_mode = "inline"
    n_reply = len(engine_run(engine, settings, args.tokens).tokens)
    variants["bare loop"] = lambda: bare_run(engine, prompt, settings, n_reply)
    results: dict[str, list[Run]] = {name: [] for name in variants}
    try:
        for run in variants.values():  # warm-up
            run()
        names = list(variants)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                results[name].append(variants[name]())
        parts = breakdown(engine, settings)
    finally:
        if before is not None:
            before.close()
        if host is not None:
            host.shutdown()
        engine.close()
    bare = results["bare loop"]
    print(
        f"{path.name}: vocab {n_vocab:,}, prompt {len(prompt)} tokens, "
        f"{n_reply} of at most {args.tokens} tokens/reply, {args.sampling} sampling, "
        f"{args.rounds} rounds, {args.threads} threads"
    )
    for name, runs in results.items():
        same = all(a.tokens == b.tokens for a, b in zip(runs, bare, strict=True))
        hosts = [x.host_us for x in runs]
        host_us = (
            f"{statistics.median(hosts):.1f} ({min(hosts):.1f}-{max(hosts):.1f})"
            if hosts == hosts and all(h == h for h in hosts)  # NaN: not measurable
            else "n/a (another process)"
        )
        print(f"  {name:<20} host {host_us} µs/token{'' if same else '  TOKENS DIFFER'}")
        summary_row(args.summary, path.name, f"host µs/token, {name}", host_us)
        if name == "bare loop":
            continue
        for metric, pick in (("decode", 1), ("prefill", 0)):
            ours = [(x.prefill_tps, x.decode_tps)[pick] for x in runs]
            base = [(x.prefill_tps, x.decode_tps)[pick] for x in bare]
            print(ratio_line(f"{metric} tok/s", ours, base))
            summary_row(
                args.summary, path.name, f"{metric} vs bare, {name}", ratio_text(ours, base)
            )
        if all(x.step_us == x.step_us for x in runs):  # in this process: its decodes timed
            print(shared_step_lines(runs, bare))
    print("  engine host work per token, measured alone on this model's logits (µs):")
    for name, us in parts.items():
        print(f"    {name:<46} {us:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--before", default="", help="an earlier git revision to compare")
    parser.add_argument("--sampling", choices=sorted(SAMPLING), default="greedy")
    parser.add_argument("--modes", default="auto,inline,overlap")
    parser.add_argument("--gpu-layers", type=int, default=None)
    parser.add_argument(
        "--host",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also through the engine host (a child process, as the app runs it)",
    )
    parser.add_argument("--summary", type=Path, default=None, help="append TSV rows here")
    parser.add_argument(
        "--system-repeat", type=int, default=40, help="system prompt sentences (40: ~350 tokens)"
    )
    parser.add_argument(
        "--prompt",
        choices=("story", "count"),
        default="story",
        help="the long story with a system prompt, or a counting request (for base models)",
    )
    args = parser.parse_args()
    global STORY
    STORY = story(args.system_repeat) if args.prompt == "story" else COUNTING
    paths = {"smollm2": models.smollm2, "gemma3": models.gemma3_270m}
    for name in args.models.split(","):
        bench_model(paths[name](), args)


if __name__ == "__main__":
    main()
