"""Handing the native chain only its survivors picks exactly what the whole row picks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.inference.candidates import GroupMaxima, survivors
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampler_chain import SamplerChain
from app.core.inference.sampling import PRUNE_LIMIT, SamplingSettings

N_CTX = 4096
SETTINGS = {
    "default (top-k 40, repeat 1.1)": SamplingSettings(),
    "greedy": SamplingSettings(temperature=0.0, repeat_penalty=1.0),
    "greedy, repeat 1.3": SamplingSettings(temperature=0.0, repeat_penalty=1.3),
    "top-k 1": SamplingSettings(top_k=1, repeat_penalty=1.0),
    "top-k 5, top-p 0.5": SamplingSettings(top_k=5, top_p=0.5, min_p=0.0),
    "top-k 200, typical 0.8, min-p 0.1": SamplingSettings(top_k=200, typical_p=0.8, min_p=0.1),
    "penalties that raise (repeat 0.5, presence -2, frequency -1)": SamplingSettings(
        top_k=10, repeat_penalty=0.5, presence_penalty=-2.0, frequency_penalty=-1.0
    ),
    "top-k 40, presence 2, frequency 2, window 8": SamplingSettings(
        presence_penalty=2.0, frequency_penalty=2.0, repeat_last_n=8
    ),
    "hot (temperature 3)": SamplingSettings(temperature=3.0, top_k=1000, top_p=1.0, min_p=0.0),
}


def rows(n_vocab: int, count: int, seed: int) -> list[np.ndarray]:
    """Logit rows shaped like a model's: a few strong tokens over a wide low plain."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        row = rng.normal(0.0, 2.0, n_vocab).astype(np.float32)
        strong = rng.choice(n_vocab, 30, replace=False)
        row[strong] += rng.uniform(4.0, 12.0, 30).astype(np.float32)
        out.append(row)
    return out


@pytest.mark.parametrize("depth", [0, 10])  # the chain's own depth, and the inspector's top 10
@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("n_vocab", [49_152, 50_000 + 13])  # whole groups, and a ragged tail
def test_the_survivors_pick_what_the_whole_row_picks(name: str, n_vocab: int, depth: int) -> None:
    settings = SETTINGS[name]
    history = [int(t) for t in np.random.default_rng(3).integers(0, n_vocab, 40)]
    full = SamplerChain(settings, 77, n_vocab, N_CTX)
    pruned = SamplerChain(settings, 77, n_vocab, N_CTX)
    assert pruned.keep is not None
    try:
        for chain in (full, pruned):
            chain.remember(history)
        picked_full, picked_pruned = [], []
        for i, row in enumerate(rows(n_vocab, 60, seed=n_vocab)):
            if i % 3 == 0:  # make the chain's own recent picks strong again: penalties bite
                row[picked_full[-6:]] += 10.0
            picked_full.append(full.sample_logits(row))
            token, scanned = pruned.pick(row, depth=depth)
            assert scanned is not None and scanned.depth >= depth
            picked_pruned.append(token)
        assert picked_pruned == picked_full
        assert len(set(picked_full)) > 5
    finally:
        full.close()
        pruned.close()


def test_greedy_picks_the_first_of_equal_maxima_like_llama_cpp() -> None:
    n_vocab = 49_152
    row = np.zeros(n_vocab, dtype=np.float32)
    row[[40_000, 7, 31_337, 4_096]] = 5.0  # four equal maxima, in different groups
    greedy = SamplingSettings(temperature=0.0, repeat_penalty=1.0)
    with (
        SamplerChain(greedy, 1, n_vocab, 64) as a,
        SamplerChain(greedy, 1, n_vocab, 64) as b,
    ):
        assert a.pick(row)[0] == b.sample_logits(row) == 7


def test_the_survivors_are_every_token_at_or_above_the_border_plus_the_window() -> None:
    n_vocab = 10_000 + 5
    groups = GroupMaxima(n_vocab)
    row = rows(n_vocab, 1, seed=5)[0]
    row[[3, 9_000, 10_004]] = row.max()  # ties at the top, one in the ragged tail
    window = {1, 2, 3, 500}
    ids, scanned = survivors(row, groups, 40, window)
    border = np.sort(row)[::-1][40 + len(window) - 1]
    expected = set(np.flatnonzero(row >= border).tolist()) | window
    assert set(ids.tolist()) == expected
    assert list(ids) == sorted(ids)
    assert scanned.depth == 40 + len(window)
    assert scanned.best is not None and set(scanned.best.tolist()) == expected - {1, 2, 500}


def test_a_search_deeper_than_the_chain_needs_serves_the_top_n_too() -> None:
    n_vocab = 10_000 + 5
    groups = GroupMaxima(n_vocab)
    row = rows(n_vocab, 1, seed=6)[0]
    ids, scanned = survivors(row, groups, 1, depth=10)  # greedy, read ten deep
    border = np.sort(row)[::-1][9]
    assert set(ids.tolist()) == set(np.flatnonzero(row >= border).tolist())
    assert list(ids) == sorted(ids) and ids.dtype == np.int32
    assert scanned.depth == 10 and scanned.best is not None
    assert scanned.peak == float(row.max())


def test_chains_that_need_the_whole_row_are_not_pruned() -> None:
    def keep(**changes: object) -> int | None:
        with SamplerChain(SamplingSettings(**changes), 1, 1000, 64) as chain:  # type: ignore[arg-type]
            return chain.keep

    assert keep(top_k=0) is None  # top-p over every token
    assert keep(mirostat=2) is None
    assert keep(top_k=PRUNE_LIMIT + 1) is None
    assert keep(top_k=40) == 40
    assert keep(temperature=0.0, top_k=0) == 1


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.load(starter_model, LoadOptions(n_ctx=1024, n_threads=1))
    yield eng
    eng.close()


def test_a_real_reply_is_the_same_with_and_without_pruning(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [Message("user", "Write a short poem about the sea.")]
    settings = SamplingSettings(seed=5, max_tokens=64)  # the defaults: top-k 40, repeat 1.1

    def reply() -> tuple[int, ...]:
        engine.clear_cache()
        done = list(engine.generate(messages, settings))[-1]
        assert isinstance(done, GenerationDone)
        return done.tokens

    pruned = reply()
    monkeypatch.setattr(SamplingSettings, "survivors", property(lambda _self: None))
    whole = reply()
    assert len(whole) > 20
    assert pruned == whole


def test_a_row_of_nans_falls_back_to_the_whole_row_instead_of_an_empty_set() -> None:
    n_vocab = 4096
    row = np.full(n_vocab, np.nan, dtype=np.float32)
    settings = SamplingSettings(repeat_penalty=1.0, seed=3)
    with (
        SamplerChain(settings, 3, n_vocab, 64) as pruned,
        SamplerChain(settings, 3, n_vocab, 64) as whole,
    ):
        assert pruned.pick(row)[0] == whole.sample_logits(row)
