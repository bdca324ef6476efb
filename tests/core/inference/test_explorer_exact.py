"""The explorer's chain is llama.cpp's chain: the same survivors, probabilities and pick.

llama.cpp's own samplers (no model needed) are chained through llama-cpp-python's
low-level API in the order `SamplerChain` uses, applied with `llama_sampler_apply` to a
`llama_token_data_array` built from the same logits row, and compared per token to
within 1e-5.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
import pytest

from app.core.inference.chain_math import (
    MIN_P,
    TOP_K,
    TOP_P,
    TYPICAL,
    canonical_draw,
    run_chain,
    seeded_pick,
)
from app.core.inference.explorer import ExplorerRow
from app.core.inference.sampling import SamplingSettings

TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
N_CTX = 512


def llama_chain(
    logits: np.ndarray, s: SamplingSettings, history: list[int], seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """llama.cpp's survivors (in its order), their probabilities, and the picked token."""
    params = llama_cpp.llama_sampler_chain_default_params()
    params.no_perf = True
    chain: Any = llama_cpp.llama_sampler_chain_init(params)

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    window = s.penalty_window(N_CTX)
    try:
        if window:
            add(
                llama_cpp.llama_sampler_init_penalties(
                    logits.size,
                    window,
                    s.repeat_penalty,
                    s.frequency_penalty,
                    s.presence_penalty,
                )
            )
        if s.is_greedy:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(llama_cpp.llama_sampler_init_typical(s.typical_p, 1))
            add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(s.temperature))
            add(llama_cpp.llama_sampler_init_dist(seed))
        if window:
            for token in history[-window:]:
                llama_cpp.llama_sampler_accept(chain, token)
        n = logits.size
        data = np.empty(n, dtype=TOKEN_DATA)
        data["id"] = np.arange(n, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        array = llama_cpp.llama_token_data_array(pointer, n, -1, False)
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        size = int(array.size)
        kept = data[:size].copy()
        picked = int(kept["id"][array.selected])
    finally:
        llama_cpp.llama_sampler_free(chain)
    return kept["id"].astype(np.int64), kept["p"], picked


def check(
    logits: np.ndarray,
    s: SamplingSettings,
    history: list[int],
    seed: int = 7,
    *,
    ties: bool = False,
) -> None:
    """Same survivors and probabilities; the same pick (with `ties`: the pick at the same
    place of llama.cpp's order, since the order of equal logits is unspecified)."""
    ids, probs, picked = llama_chain(logits, s, history, seed)
    outcome = run_chain(logits, s, history, n_ctx=N_CTX)
    if s.is_greedy:  # greedy marks its pick and leaves the array as it was
        assert outcome.ids.size == 1 and int(outcome.ids[0]) == picked
        return
    assert outcome.ids.size == ids.size, f"survivors differ for {s}"
    ours = dict(zip(outcome.ids.tolist(), outcome.probs.tolist(), strict=True))
    theirs = dict(zip(ids.tolist(), probs.tolist(), strict=True))
    assert ours.keys() == theirs.keys(), f"different survivors for {s}"
    for token, p in theirs.items():
        assert ours[token] == pytest.approx(p, abs=1e-5), f"token {token} for {s}"
    ours_pick = seeded_pick(outcome, seed)
    where = outcome.ids.tolist().index(ours_pick)
    assert where == ids.tolist().index(picked), f"pick for {s}"
    if not ties:
        assert ours_pick == picked, f"pick for {s}"


def random_row(n: int, seed: int, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=n) * scale).astype(np.float32)


SETTINGS = [
    SamplingSettings(),
    SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0),
    SamplingSettings(top_k=0, top_p=0.95, min_p=0.0, repeat_penalty=1.0),
    SamplingSettings(top_k=0, top_p=0.5, min_p=0.0, temperature=1.4),
    SamplingSettings(top_k=0, top_p=0.999, min_p=0.0, temperature=0.7),
    SamplingSettings(top_k=0, top_p=1.0, min_p=0.1, repeat_penalty=1.0),
    SamplingSettings(top_k=5, top_p=1.0, min_p=0.0, temperature=2.0),
    SamplingSettings(top_k=1, top_p=0.9, min_p=0.05),
    SamplingSettings(top_k=200, top_p=0.9, min_p=0.0, typical_p=0.8),
    SamplingSettings(top_k=0, top_p=1.0, min_p=0.0, typical_p=0.5),
    SamplingSettings(top_k=0, top_p=0.9, min_p=0.02, typical_p=0.95, temperature=0.5),
    SamplingSettings(top_k=0, top_p=1.0, min_p=0.0, typical_p=0.3, temperature=1.2),
    SamplingSettings(temperature=0.0),
    SamplingSettings(temperature=0.0, repeat_penalty=1.5),
    SamplingSettings(top_k=1_000_000, top_p=0.8),
    SamplingSettings(repeat_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.3),
    SamplingSettings(repeat_penalty=0.8, presence_penalty=-0.6, repeat_last_n=-1, top_k=0),
    SamplingSettings(repeat_penalty=1.2, repeat_last_n=0),
    SamplingSettings(top_k=40, top_p=0.05, min_p=0.9, temperature=5.0),
    SamplingSettings(top_k=0, top_p=0.3, min_p=0.0, temperature=0.05),
]


@pytest.mark.parametrize("n", [300, 5000, 49_152])
@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_chain_matches_llama_cpp(n: int, index: int) -> None:
    logits = random_row(n, seed=n + index)
    history = [int(t) for t in np.random.default_rng(index).integers(0, n, 100)]
    check(logits, SETTINGS[index], history, seed=1000 + index)


@pytest.mark.parametrize("seed", range(25))
def test_random_settings_and_seeds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = SamplingSettings(
        temperature=float(rng.choice([0.0, 0.3, 0.8, 1.0, 1.7])),
        top_k=int(rng.choice([0, 1, 10, 40, 2000])),
        top_p=float(rng.choice([1.0, 0.99, 0.9, 0.5, 0.1])),
        min_p=float(rng.choice([0.0, 0.01, 0.05, 0.3])),
        typical_p=float(rng.choice([1.0, 1.0, 0.9, 0.6])),
        repeat_penalty=float(rng.choice([1.0, 1.1, 1.5])),
        presence_penalty=float(rng.choice([0.0, 0.4])),
        repeat_last_n=int(rng.choice([0, 16, 64, -1])),
        seed=seed,
    )
    logits = random_row(int(rng.choice([1000, 20_000])), seed, scale=float(rng.choice([1, 4])))
    history = [int(t) for t in rng.integers(0, 50, 200)]  # repeats in the likely tokens
    check(logits, s, history, seed=int(rng.integers(0, 2**31)))


def test_ties_that_do_not_straddle_a_cut_match_per_token() -> None:
    logits = random_row(3000, seed=3)
    logits[10:20] = 20.0  # ten tokens tied at the top
    logits[500:900] = -4.0  # a plateau of ties far below
    for s in [
        SamplingSettings(top_k=10, top_p=1.0, min_p=0.0),
        SamplingSettings(top_k=0, top_p=1.0, min_p=0.0),
        SamplingSettings(top_k=0, top_p=1.0, min_p=0.5),
        SamplingSettings(top_k=0, top_p=0.999999, min_p=0.0, temperature=3.0),
        SamplingSettings(temperature=0.0),
    ]:
        check(logits, s, [], seed=11, ties=True)


def test_ties_across_a_cut_keep_the_same_probabilities() -> None:
    """Which of several equal tokens llama.cpp keeps is unspecified (its sort is unstable);
    how many survive and the probabilities they get are not."""
    logits = random_row(3000, seed=4)
    logits[100:110] = 20.0
    s = SamplingSettings(top_k=5, top_p=1.0, min_p=0.0)
    ids, probs, _ = llama_chain(logits, s, [], seed=1)
    outcome = run_chain(logits, s, [], n_ctx=N_CTX)
    assert outcome.ids.size == ids.size == 5
    assert set(outcome.ids.tolist()) <= set(range(100, 110))
    np.testing.assert_allclose(np.sort(outcome.probs), np.sort(probs), atol=1e-5)


def test_draws_follow_the_seed_stream() -> None:
    """The n-th token of one chain uses the n-th draw of mt19937(seed)."""
    logits = random_row(2000, seed=5, scale=1.0)
    s = SamplingSettings(top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, temperature=1.5)
    params = llama_cpp.llama_sampler_chain_default_params()
    chain: Any = llama_cpp.llama_sampler_chain_init(params)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(1.5))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(42))
    outcome = run_chain(logits, s)
    try:
        for draw in range(20):
            data = np.empty(logits.size, dtype=TOKEN_DATA)
            data["id"] = np.arange(logits.size)
            data["logit"] = logits
            data["p"] = 0.0
            pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
            array = llama_cpp.llama_token_data_array(pointer, logits.size, -1, False)
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
            assert seeded_pick(outcome, 42, draw) == int(data["id"][array.selected])
    finally:
        llama_cpp.llama_sampler_free(chain)


def test_mt19937_matches_the_standard() -> None:
    """The C++ standard fixes mt19937(5489)'s 10000th output at 4123659995."""
    generator = np.random.MT19937()
    from app.core.inference.chain_math import _mt19937_key

    generator.state = {
        "bit_generator": "MT19937",
        "state": {"key": _mt19937_key(5489).copy(), "pos": 624},
    }
    assert int(generator.random_raw(10_000)[-1]) == 4123659995
    assert 0.0 <= canonical_draw(1, 0) < 1.0


def test_explorer_names_the_sampler_that_cut_each_candidate() -> None:
    logits = np.linspace(5.0, -5.0, 1000).astype(np.float32)
    row = ExplorerRow(logits, texts={0: "a"})
    found = row.explore(SamplingSettings(top_k=20, top_p=0.5, min_p=0.0, repeat_penalty=1.0))
    kept = [c for c in found.candidates if c.cut_by is None]
    assert found.survivors == len(kept) < 20
    assert {c.cut_by for c in found.candidates} == {None, TOP_P, TOP_K}
    assert found.candidates[0].text == "a" and found.candidates[1].text == "#1"
    assert sum(c.after for c in kept) == pytest.approx(1.0, abs=1e-5)
    assert found.mass_kept == pytest.approx(sum(c.before for c in kept))
    assert found.entropy_after is not None and found.entropy_after < found.entropy_before
    typical = row.explore(SamplingSettings(top_k=0, top_p=1.0, min_p=0.2, typical_p=0.5))
    assert {c.cut_by for c in typical.candidates} <= {None, TYPICAL, MIN_P}
    greedy = row.explore(SamplingSettings(temperature=0.0))
    assert greedy.survivors == 1 and greedy.pick == 0 and greedy.pick_rule == "greedy"
    mirostat = row.explore(SamplingSettings(mirostat=2))
    assert mirostat.survivors is None and "Mirostat" in mirostat.note
