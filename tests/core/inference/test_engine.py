"""The engine against the real llama.cpp and the real SmolLM2-135M-Instruct model."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import ContextOverflowError, EngineStateError
from app.core.inference.engine import Engine
from app.core.inference.events import (
    GenerationDone,
    GenerationEvent,
    PrefillProgress,
    PrefillStarted,
    StopReason,
    TokenEvent,
)
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.prompt import OverflowPolicy
from app.core.inference.sampling import SamplingSettings, SettingsHolder

GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=40)
WILD = SamplingSettings(
    temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, max_tokens=24
)
THREADS = 2
HAIKU = [Message("user", "Write a haiku about a fireplace.")]


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.load(starter_model, LoadOptions(n_ctx=2048, n_threads=THREADS))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def small_engine(starter_model: Path) -> Iterator[Engine]:
    """A 768-token context read in 128-token batches: cheap prefill and overflow tests."""
    eng = Engine()
    eng.load(starter_model, LoadOptions(n_ctx=768, n_batch=128, n_threads=THREADS))
    yield eng
    eng.close()


def run(
    engine: Engine, messages: list[Message], settings: object = GREEDY, **kw: object
) -> tuple[list[GenerationEvent], GenerationDone]:
    events = list(engine.generate(messages, settings, **kw))  # type: ignore[arg-type]
    done = events[-1]
    assert isinstance(done, GenerationDone)
    return events, done


def tokens_of(events: list[GenerationEvent]) -> list[TokenEvent]:
    return [e for e in events if isinstance(e, TokenEvent)]


def test_greedy_matches_llama_cpp_python(engine: Engine, starter_model: Path) -> None:
    import llama_cpp
    from llama_cpp import Llama

    # Flash attention changes the numerics slightly; match the engine's CPU default (off).
    reference = Llama(
        str(starter_model),
        n_ctx=2048,
        n_threads=THREADS,
        n_batch=512,
        flash_attn=False,
        verbose=True,
    )
    try:
        theirs = reference.create_chat_completion(
            [m.as_dict() for m in HAIKU],  # type: ignore[misc]
            temperature=0.0,
            repeat_penalty=1.0,
            max_tokens=40,
            seed=1,
        )
        their_text = theirs["choices"][0]["message"]["content"]  # type: ignore[index]
        prompt = list(engine.plan(HAIKU).tokens)
        reference.reset()
        vocab = llama_cpp.llama_model_get_vocab(reference.model)
        their_tokens: list[int] = []
        for tok in reference.generate(prompt, temp=0.0, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, tok) or len(their_tokens) == 40:
                break
            their_tokens.append(tok)
    finally:
        reference.close()

    events, done = run(engine, HAIKU)
    assert [e.token_id for e in tokens_of(events)] == their_tokens
    assert done.text == their_text
    assert done.stats.completion_tokens == len(their_tokens) > 5


def test_text_pieces_add_up_to_the_reply(engine: Engine) -> None:
    events, done = run(engine, HAIKU)
    streamed = "".join(e.text for e in tokens_of(events)) + done.tail
    assert streamed == done.text
    assert done.tokens == tuple(e.token_id for e in tokens_of(events))


def test_same_seed_same_reply_and_other_seeds_differ(engine: Engine) -> None:
    replies = [run(engine, HAIKU, WILD.with_changes(seed=s))[1] for s in (7, 7, 8, 9)]
    assert replies[0].text == replies[1].text
    assert replies[0].stats.seed == 7
    assert len({r.text for r in replies[1:]}) == 3


def test_unfixed_seed_is_fresh_each_reply(engine: Engine) -> None:
    seeds = {run(engine, HAIKU, WILD.with_changes(max_tokens=2))[1].stats.seed for _ in range(3)}
    assert len(seeds) == 3


@pytest.mark.parametrize("settings", [GREEDY, WILD.with_changes(seed=5)])
def test_rerunning_a_cached_prompt_is_exact_and_reads_nothing(
    engine: Engine, settings: SamplingSettings
) -> None:
    chat = [Message("user", "Hi!")]
    engine.clear_cache()
    _, first = run(engine, chat, settings)
    events, again = run(engine, chat, settings)
    assert again.tokens == first.tokens
    assert again.stats.cached_tokens == again.stats.prompt_tokens
    assert not [e for e in events if isinstance(e, PrefillProgress)]
    # The first token really is sampled again: another seed can pick differently.
    if not settings.is_greedy:
        others = {run(engine, chat, settings.with_changes(seed=s))[1].tokens for s in (6, 7, 8)}
        assert len(others | {first.tokens}) > 1


def test_auto_flash_attention_is_off_on_the_cpu(engine: Engine) -> None:
    loaded = engine.loaded
    assert loaded is not None and loaded.n_gpu_layers == 0
    assert loaded.flash_attn == "off"


def test_top_alternatives_are_the_models_distribution(engine: Engine) -> None:
    events, _ = run(engine, HAIKU)
    for ev in tokens_of(events):
        probs = [a.prob for a in ev.alternatives]
        assert len(ev.alternatives) == 10
        assert probs == sorted(probs, reverse=True)
        assert 0.0 < sum(probs) <= 1.0 + 1e-5
        # Greedy picks the most likely token, and its reported probability is the top one.
        assert ev.alternatives[0].token_id == ev.token_id
        assert ev.prob == pytest.approx(probs[0], rel=1e-5)


def test_settings_change_mid_reply_steers_the_rest(engine: Engine) -> None:
    holder = SettingsHolder(WILD.with_changes(seed=3, max_tokens=30))
    picked: list[TokenEvent] = []
    for ev in engine.generate(HAIKU, holder):
        if isinstance(ev, TokenEvent):
            picked.append(ev)
            if len(picked) == 10:
                holder.update(top_k=1)
    before, after = picked[:10], picked[10:]
    assert after, "the reply ended before the change could apply"
    assert any(ev.token_id != ev.alternatives[0].token_id for ev in before)
    assert all(ev.token_id == ev.alternatives[0].token_id for ev in after)


@pytest.mark.parametrize(
    "changes",
    [
        {"mirostat": 1, "mirostat_tau": 4.0, "mirostat_eta": 0.2},
        {"mirostat": 2},
        {"typical_p": 0.8},
        {"top_k": 5, "top_p": 0.8, "min_p": 0.1},
        {
            "repeat_penalty": 1.5,
            "repeat_last_n": -1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.5,
        },
    ],
)
def test_every_sampler_path_is_reproducible(engine: Engine, changes: dict[str, object]) -> None:
    settings = WILD.with_changes(seed=11, max_tokens=12, **changes)
    first, second = (run(engine, HAIKU, settings)[1] for _ in range(2))
    assert first.text == second.text and first.stats.completion_tokens > 0


@pytest.mark.parametrize(
    "penalty", [{"repeat_penalty": 1.8}, {"frequency_penalty": 1.5}, {"presence_penalty": 1.5}]
)
def test_penalties_cut_repetition_in_a_greedy_reply(
    engine: Engine, penalty: dict[str, float]
) -> None:
    count = [Message("user", "Count from 1 to 500, separated by commas.")]

    def repeats(done: GenerationDone) -> int:
        return len(done.tokens) - len(set(done.tokens))

    plain = run(engine, count, GREEDY)[1]
    penalised = run(engine, count, GREEDY.with_changes(**penalty))[1]
    assert repeats(plain) > 10
    assert repeats(penalised) < repeats(plain) / 2


def test_second_turn_reuses_the_first_turns_cache(engine: Engine) -> None:
    _, first = run(engine, HAIKU)
    follow_up = [*HAIKU, Message("assistant", first.text), Message("user", "Now one about snow.")]
    events, second = run(engine, follow_up)
    started = events[0]
    assert isinstance(started, PrefillStarted)
    assert second.stats.cached_tokens >= first.stats.prompt_tokens
    assert started.cached_tokens == second.stats.cached_tokens
    assert second.stats.prompt_tokens > second.stats.cached_tokens


def test_restored_snapshot_is_reused_and_stale_one_discarded(engine: Engine) -> None:
    chat_a = [Message("user", "List three colours.")]
    _, a1 = run(engine, chat_a)
    snapshot = engine.save_snapshot()
    run(engine, [Message("user", "Tell me about the moon.")])  # evicts chat A

    follow_up = [*chat_a, Message("assistant", a1.text), Message("user", "Two more.")]
    stale = dataclasses.replace(snapshot, build="llama-cpp-python 0.0.0")
    assert engine.restore_snapshot(stale) is False
    assert engine.cached_tokens == ()

    assert engine.restore_snapshot(snapshot) is True
    assert engine.cached_tokens == snapshot.tokens
    _, a2 = run(engine, follow_up)
    assert a2.stats.cached_tokens >= a1.stats.prompt_tokens


def test_snapshot_survives_a_file_round_trip(engine: Engine, tmp_path: Path) -> None:
    from app.core.inference.kv_snapshot import KVSnapshot

    run(engine, HAIKU)
    snapshot = engine.save_snapshot()
    snapshot.save(tmp_path / "a.kv")
    loaded = KVSnapshot.load(tmp_path / "a.kv")
    assert loaded == snapshot
    (tmp_path / "junk.kv").write_bytes(b"not a snapshot")
    assert KVSnapshot.load(tmp_path / "junk.kv") is None


class _CancelAfterArming(threading.Event):
    """A cancel event that turns itself on at its `n`-th poll after `arm()`.

    The engine polls it before each prefill chunk and, through llama.cpp's abort
    callback, inside `llama_decode`; this reaches the second path deterministically.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.polls = 0
        self.n = n
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def is_set(self) -> bool:
        if self.armed:
            self.polls += 1
            if self.polls >= self.n:
                self.set()
        return super().is_set()


LONG = [
    Message("user", "Summarise this text. " + "The quick brown fox jumps over the lazy dog. " * 30)
]


def test_cancel_inside_a_prefill_chunk_then_reuse(small_engine: Engine) -> None:
    engine = small_engine
    engine.clear_cache()
    cancel = _CancelAfterArming(3)
    progress = []
    for ev in engine.generate(LONG, GREEDY, cancel=cancel):
        if isinstance(ev, PrefillProgress):
            progress.append(ev)
            cancel.arm()
        if isinstance(ev, GenerationDone):
            done = ev
    assert done.stats.prompt_tokens > 256, "the prompt must span three 128-token chunks"
    assert done.stats.stop_reason is StopReason.CANCELLED
    assert done.stats.completion_tokens == 0
    # Poll 1 is the check before chunk 2; polls 2+ came from inside llama_decode.
    assert cancel.polls >= 3
    assert [p.done for p in progress] == [128]
    assert len(engine.cached_tokens) == 128

    # The engine is still usable and reuses what was read before the cancel.
    _, again = run(engine, LONG, GREEDY.with_changes(max_tokens=3))
    assert again.stats.stop_reason is StopReason.MAX_TOKENS
    assert again.stats.cached_tokens == 128


def test_cancel_between_prefill_chunks(small_engine: Engine) -> None:
    engine = small_engine
    engine.clear_cache()
    cancel = threading.Event()
    seen = 0
    for ev in engine.generate(LONG, GREEDY, cancel=cancel):
        if isinstance(ev, PrefillProgress):
            seen += 1
            cancel.set()
        if isinstance(ev, GenerationDone):
            done = ev
    assert seen == 1
    assert done.stats.stop_reason is StopReason.CANCELLED
    assert len(engine.cached_tokens) == 128
    _, again = run(engine, LONG, GREEDY.with_changes(max_tokens=2))
    assert again.stats.cached_tokens == 128


def test_cancel_during_decode_keeps_engine_usable(engine: Engine) -> None:
    cancel = threading.Event()
    count = 0
    for ev in engine.generate(HAIKU, GREEDY, cancel=cancel):
        if isinstance(ev, TokenEvent):
            count += 1
            if count == 5:
                cancel.set()
        if isinstance(ev, GenerationDone):
            done = ev
    assert done.stats.stop_reason is StopReason.CANCELLED
    assert done.stats.completion_tokens == 5
    _, again = run(engine, HAIKU)
    assert again.stats.cached_tokens >= again.stats.prompt_tokens - 1
    assert again.text.startswith(done.text)


def test_stop_string_ends_the_reply_before_it(engine: Engine) -> None:
    _, full = run(engine, HAIKU)
    stop = full.text.split()[2]
    _, done = run(engine, HAIKU, GREEDY.with_changes(stop=(stop,)))
    assert done.stats.stop_reason is StopReason.STOP_STRING
    assert stop not in done.text
    assert full.text.startswith(done.text)


def test_max_tokens(engine: Engine) -> None:
    _, done = run(engine, HAIKU, GREEDY.with_changes(max_tokens=4))
    assert done.stats.stop_reason is StopReason.MAX_TOKENS
    assert done.stats.completion_tokens == 4


def test_stats_are_consistent(engine: Engine) -> None:
    _, done = run(engine, [Message("user", "Count from one to twenty in words.")])
    s = done.stats
    assert s.stop_reason in (StopReason.END_OF_TURN, StopReason.MAX_TOKENS)
    assert s.completion_tokens > 10
    assert s.prefill_tps > 0 and s.decode_tps > 0
    assert s.ttft_ms > 0
    assert s.decode_ms > 0


def test_overflow_stop_policy_refuses_with_numbers(small_engine: Engine) -> None:
    engine = small_engine
    history = []
    for i in range(12):
        history += [
            Message("user", f"Question {i}: " + "tell me more " * 10),
            Message("assistant", "Here is more. " * 12),
        ]
    history.append(Message("user", "And finally?"))
    with pytest.raises(ContextOverflowError) as err:
        engine.plan([Message("system", "Be brief."), *history], max_tokens=64)
    assert err.value.limit == 768 and err.value.needed > 768
    assert "768" in str(err.value)


def test_overflow_drop_oldest_keeps_system_and_reports(small_engine: Engine) -> None:
    engine = small_engine
    engine.clear_cache()
    history = [Message("system", "Be brief.")]
    for i in range(12):
        history += [
            Message("user", f"Question {i}: " + "tell me more " * 10),
            Message("assistant", "Here is more. " * 12),
        ]
    history.append(Message("user", "And finally?"))
    events, done = run(
        engine, history, GREEDY.with_changes(max_tokens=8), policy=OverflowPolicy.DROP_OLDEST
    )
    started = events[0]
    assert isinstance(started, PrefillStarted)
    assert started.dropped and 0 not in started.dropped
    assert started.dropped == tuple(range(1, len(started.dropped) + 1))
    assert len(started.dropped) % 2 == 0  # whole turns
    assert done.stats.dropped_messages == started.dropped
    assert started.prompt_tokens + 8 <= engine.n_ctx


def test_context_full_stops_the_reply(starter_model: Path) -> None:
    # Greedy, the model counts on for ~120 tokens; the prompt leaves room for about 100.
    engine = Engine()
    engine.load(starter_model, LoadOptions(n_ctx=256, n_threads=THREADS))
    try:
        chat = [
            Message("system", "You are a counting assistant. " + "You count carefully. " * 30),
            Message("user", "Count from 1 to 500, separated by commas."),
        ]
        _, done = run(engine, chat, GREEDY.with_changes(max_tokens=None))
        assert done.stats.stop_reason is StopReason.CONTEXT_FULL
        assert done.stats.prompt_tokens + done.stats.completion_tokens == engine.n_ctx
    finally:
        engine.close()


def test_calls_without_a_model_are_refused() -> None:
    eng = Engine()
    with pytest.raises(EngineStateError):
        eng.generate(HAIKU)
    with pytest.raises(EngineStateError):
        eng.tokenize("hi")
    eng.close()
    eng.close()
