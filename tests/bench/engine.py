"""Engine benchmark: ours vs a bare llama-cpp-python loop, measured alternately in one run.

    python -m tests.bench.engine [--model PATH] [--threads N] [--rounds N]
                                 [--sections throughput,ttft,cancel]

Prints medians and ratios for: prefill and decode tokens/s (engine with top-10
alternatives vs `Llama.eval` + a native sampler chain), time to first token on turn 10 of
a chat with ~1,500 tokens of history vs turn 1, and cancel latency (prefill and decode).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import llama_cpp

from app.core.host.engine_host import EngineHost
from app.core.host.protocol import TokenBatch
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, PrefillStarted, StopReason, TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.machine.hardware import default_threads
from tests.conftest import MODEL_CACHE

N_CTX = 4096
DECODE_TOKENS = 128
GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=DECODE_TOKENS)
STORY = [
    Message("system", "You are a storyteller. " + "Write vivid, long, detailed stories. " * 40),
    Message("user", "Tell me a long story about a lighthouse keeper and a storm."),
]


def bare_loop(llm: llama_cpp.Llama, prompt: list[int], n: int) -> tuple[float, float, list[int]]:
    """Prefill tokens/s, decode tokens/s and the tokens of a plain eval + greedy-chain loop."""
    params = llama_cpp.llama_sampler_chain_default_params()
    chain = llama_cpp.llama_sampler_chain_init(params)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    try:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        prefill_s = time.perf_counter() - t0
        tokens: list[int] = []
        t_first = 0.0
        for _ in range(n):
            token = llama_cpp.llama_sampler_sample(chain, llm.ctx, -1)
            if not tokens:
                t_first = time.perf_counter()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            tokens.append(token)
            if len(tokens) == n:
                break
            llm.eval([token])
        decode_s = time.perf_counter() - t_first
    finally:
        llama_cpp.llama_sampler_free(chain)
    return len(prompt) / prefill_s, (len(tokens) - 1) / decode_s, tokens


def engine_run(engine: Engine) -> tuple[float, float, list[int]]:
    engine.clear_cache()
    done = next(e for e in engine.generate(STORY, GREEDY) if isinstance(e, GenerationDone))
    return done.stats.prefill_tps, done.stats.decode_tps, list(done.tokens)


def throughput(engine: Engine, model: Path, threads: int, rounds: int) -> None:
    llm = llama_cpp.Llama(
        str(model),
        n_ctx=N_CTX,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        flash_attn=False,
        verbose=True,
    )
    prompt = list(engine.plan(STORY, DECODE_TOKENS).tokens)
    ours_p, ours_d, bare_p, bare_d = [], [], [], []
    try:
        engine_run(engine)  # warm-up both
        bare_loop(llm, prompt, 8)
        for _ in range(rounds):
            p, d, our_tokens = engine_run(engine)
            ours_p.append(p)
            ours_d.append(d)
            p, d, bare_tokens = bare_loop(llm, prompt, DECODE_TOKENS)
            bare_p.append(p)
            bare_d.append(d)
            assert our_tokens == bare_tokens, "engine and bare loop disagree on greedy tokens"
    finally:
        llm.close()
    print(
        f"prompt {len(prompt)} tokens, decode {DECODE_TOKENS} tokens, {rounds} rounds, "
        f"{threads} threads"
    )
    report("prefill tok/s", ours_p, bare_p, "target >= 0.97")
    report("decode tok/s", ours_d, bare_d, "target >= 0.97")


def report(name: str, ours: list[float], base: list[float], target: str) -> None:
    """Medians of both, and the median of the per-round ratios (each round measured the two
    back to back, so a paired ratio cancels most of the machine's drift)."""
    mo, mb = statistics.median(ours), statistics.median(base)
    paired = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    print(
        f"  {name:<16} engine {mo:9.1f}   bare {mb:9.1f}   ratio {paired:5.3f} "
        f"(paired median; range {min(o / b for o, b in zip(ours, base, strict=True)):.3f}-"
        f"{max(o / b for o, b in zip(ours, base, strict=True)):.3f})  ({target})"
    )


def ttft_turns(engine: Engine, rounds: int) -> None:
    questions = [
        "Describe a city at dawn.",
        "What do the markets sell?",
        "Who lives by the river?",
        "Tell me about the old bridge.",
        "What happens at noon?",
        "Describe the evening bells.",
        "What do children play?",
        "Where do travellers sleep?",
        "What is the city's secret?",
        "Sum it all up in one line.",
    ]
    first_turn = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=1)
    history_turn = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=160)
    ratios, t1s, t10s, hist = [], [], [], 0
    for _ in range(rounds):
        engine.clear_cache()
        chat: list[Message] = []
        t1 = 0.0
        for i, question in enumerate(questions):
            chat.append(Message("user", question))
            settings = first_turn if i in (0, 9) else history_turn
            if i == 0:
                done = last(engine, chat, first_turn)
                t1 = done.stats.ttft_ms
                engine.clear_cache()
                done = last(engine, chat, history_turn)
            else:
                done = last(engine, chat, settings)
            if i == 9:
                t10s.append(done.stats.ttft_ms)
                t1s.append(t1)
                ratios.append(done.stats.ttft_ms / t1)
                hist = done.stats.prompt_tokens
            chat.append(Message("assistant", done.text))
    print(
        f"  ttft turn 1 {statistics.median(t1s):7.1f} ms, turn 10 ({hist} prompt tokens) "
        f"{statistics.median(t10s):7.1f} ms, ratio {statistics.median(ratios):5.2f} "
        "(target <= 1.3)"
    )


def last(engine: Engine, chat: list[Message], settings: SamplingSettings) -> GenerationDone:
    events = list(engine.generate(chat, settings))
    done = events[-1]
    assert isinstance(done, GenerationDone)
    return done


def cancel_latency(engine: Engine | EngineHost, rounds: int, name: str = "engine") -> None:
    """Time from `cancel.set()` (30 ms into prefill or decode) to the final event (through
    the engine host: the final event back in this process)."""
    long_prompt = [Message("user", "Read this. " + "The lighthouse stood on the cliff. " * 300)]
    prefill: list[float] = []
    decode: list[float] = []
    settings = GREEDY.with_changes(max_tokens=None)
    for _ in range(rounds):
        for phase, sink in (("prefill", prefill), ("decode", decode)):
            engine.clear_cache()
            cancel = threading.Event()
            fired: list[float] = []

            def fire(event: threading.Event = cancel, stamps: list[float] = fired) -> None:
                stamps.append(time.perf_counter())
                event.set()

            timer = threading.Timer(0.03, fire)
            chat = long_prompt if phase == "prefill" else STORY
            trigger = PrefillStarted if phase == "prefill" else (TokenEvent, TokenBatch)
            for event in engine.generate(chat, settings, cancel=cancel):
                if isinstance(event, trigger) and not timer.is_alive() and not fired:
                    timer.start()
                if isinstance(event, GenerationDone):
                    timer.cancel()
                    if event.stats.stop_reason is StopReason.CANCELLED:
                        sink.append((time.perf_counter() - fired[0]) * 1000)
    print(
        f"  {name} cancel latency over {len(prefill)}+{len(decode)} runs: prefill median "
        f"{statistics.median(prefill):6.1f} ms max {max(prefill):6.1f} ms; decode median "
        f"{statistics.median(decode):6.1f} ms max {max(decode):6.1f} ms (target <= 100 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", type=Path, default=MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--sections", default="throughput,ttft,cancel", help="comma-separated subset to run"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if not args.model.is_file():
        from app.core.models.starter import install_starter

        args.model = install_starter(MODEL_CACHE)
    engine = Engine()
    engine.load(args.model, LoadOptions(n_ctx=N_CTX, n_threads=args.threads))
    try:
        print(f"model {args.model.name}")
        if "throughput" in sections:
            throughput(engine, args.model, args.threads, args.rounds)
        if "ttft" in sections:
            ttft_turns(engine, max(1, args.rounds // 2))
        if "cancel" in sections:
            cancel_latency(engine, args.rounds)
            host = EngineHost()
            try:
                host.load(args.model, LoadOptions(n_ctx=N_CTX, n_threads=args.threads))
                cancel_latency(host, args.rounds, "engine host")
            finally:
                host.shutdown()
    finally:
        engine.close()


if __name__ == "__main__":
    main()
