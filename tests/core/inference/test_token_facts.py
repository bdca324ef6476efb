"""Token data overlapped with the next decode is exactly the inline token data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.machine.hardware import spare_core

STORY = [Message("user", "Tell me a short story about a lighthouse.")]
SAMPLED = SamplingSettings(temperature=0.9, seed=11, max_tokens=48)


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.load(starter_model, LoadOptions(n_ctx=1024, n_threads=1))
    yield eng
    eng.close()


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hearth-token-data"]


def reply(engine: Engine, mode: str, settings: SamplingSettings = SAMPLED) -> list[object]:
    engine.token_data_mode = mode  # type: ignore[assignment]
    engine.clear_cache()
    events = list(engine.generate(STORY, settings))
    assert isinstance(events[-1], GenerationDone)
    return events


def test_overlapped_token_data_equals_inline_token_for_token(engine: Engine) -> None:
    inline = reply(engine, "inline")
    overlap = reply(engine, "overlap")
    tokens_inline = [e for e in inline if isinstance(e, TokenEvent)]
    tokens_overlap = [e for e in overlap if isinstance(e, TokenEvent)]
    assert len(tokens_inline) > 10
    assert tokens_overlap == tokens_inline  # ids, text, prob and all ten alternatives
    assert inline[-1].text == overlap[-1].text  # type: ignore[attr-defined]
    # Each event's alternatives belong to its own token: where the sampled id is listed,
    # its probability is the one listed.
    for event in tokens_overlap:
        listed = {a.token_id: a.prob for a in event.alternatives}
        if event.token_id in listed:
            assert event.prob == pytest.approx(listed[event.token_id], rel=1e-6)


def test_overlapped_events_match_the_logits_they_came_from(engine: Engine) -> None:
    engine.token_data_mode = "overlap"
    engine.clear_cache()
    greedy = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=12)
    for event in engine.generate(STORY, greedy):
        if isinstance(event, TokenEvent):
            assert event.alternatives[0].token_id == event.token_id
            assert event.prob == pytest.approx(event.alternatives[0].prob, rel=1e-6)


def test_a_reply_abandoned_midway_leaves_no_helper_thread(engine: Engine) -> None:
    engine.token_data_mode = "overlap"
    engine.clear_cache()
    stream = engine.generate(STORY, SettingsHolder(SAMPLED))
    for event in stream:
        if isinstance(event, TokenEvent):
            assert len(helper_threads()) == 1
            break
    stream.close()  # type: ignore[attr-defined]
    assert helper_threads() == []
    # and the engine still works, inline as well
    assert reply(engine, "inline")[-1].tokens  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("threads", "gpu_layers", "cpus", "expected"),
    [(2, 0, 2, False), (1, 0, 2, True), (8, 0, 16, True), (16, 0, 16, False), (16, -1, 16, True)],
)
def test_overlap_only_where_a_core_is_free_or_the_gpu_decodes(
    threads: int, gpu_layers: int, cpus: int, expected: bool
) -> None:
    assert spare_core(threads, gpu_layers, cpus) is expected


def test_probabilities_are_exact_when_the_maximum_is_in_the_ragged_tail() -> None:
    from app.core.inference.token_probs import ProbabilityReader

    n = 50_001  # 50,001 = 64 * 781 + 17: the last 17 tokens are outside the groups
    logits = np.random.default_rng(1).normal(0.0, 2.0, n).astype(np.float32)
    logits[-1] = 40.0
    reader = ProbabilityReader(n)
    top = reader.read(logits)
    exact = np.exp(logits.astype(np.float64) - 40.0)
    exact /= exact.sum()
    assert int(top.ids[0]) == n - 1
    assert top.probs[0] == pytest.approx(exact[-1], rel=1e-5)
    assert reader.prob_of(int(top.ids[3])) == pytest.approx(exact[top.ids[3]], rel=1e-4)
