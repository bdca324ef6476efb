"""Top alternatives from logits match a straightforward full softmax."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.inference.candidates import GroupMaxima
from app.core.inference.token_probs import ProbabilityReader


@pytest.mark.parametrize("spread", [0.1, 3.0, 30.0])
def test_top_tokens_match_full_softmax(spread: float) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(5000) * spread).astype(np.float32)
    reader = ProbabilityReader(5000)
    top = reader.read(logits)
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    expected = np.argsort(-probs, kind="stable")[:10]
    assert list(top.ids) == list(expected)
    np.testing.assert_allclose(top.probs, probs[expected], rtol=1e-4)
    assert reader.prob_of(int(expected[3])) == pytest.approx(probs[expected[3]], rel=1e-4)


def test_peaked_distribution_with_few_candidates_still_gives_ten() -> None:
    logits = np.full(1000, -50.0, dtype=np.float32)
    logits[[5, 9]] = [10.0, 9.0]
    logits[100:108] = np.linspace(-40, -41, 8)
    top = ProbabilityReader(1000).read(logits)
    assert list(top.ids[:2]) == [5, 9]
    assert list(top.ids[2:]) == list(range(100, 108))


@pytest.mark.parametrize("n_vocab", [300, 1000, 49152, 50001])
def test_grouped_top_search_is_exact_for_any_vocabulary_size(n_vocab: int) -> None:
    rng = np.random.default_rng(n_vocab)
    reader = ProbabilityReader(n_vocab)
    for _ in range(50):
        logits = rng.normal(0.0, 3.0, n_vocab).astype(np.float32)
        assert list(reader.read(logits).ids) == list(np.argsort(-logits, kind="stable")[:10])


@pytest.mark.parametrize("depth", [10, 45])
def test_the_sampler_s_candidate_search_gives_the_same_top_tokens(depth: int) -> None:
    rng = np.random.default_rng(depth)
    n_vocab = 50_001
    groups = GroupMaxima(n_vocab)
    own, shared = ProbabilityReader(n_vocab), ProbabilityReader(n_vocab)
    for _ in range(20):
        logits = rng.normal(0.0, 3.0, n_vocab).astype(np.float32)
        logits[rng.integers(0, n_vocab, 5)] = logits.max()  # ties at the top
        scanned = groups.scan(logits)
        scanned = scanned._replace(best=groups.at_least(logits, scanned.maxima, depth), depth=depth)
        a, b = own.read(logits), shared.read(logits, scanned)
        assert list(a.ids) == list(b.ids) == list(np.argsort(-logits, kind="stable")[:10])
        np.testing.assert_array_equal(a.probs, b.probs)


@pytest.mark.parametrize("peak", [-70.0, -30.0, 0.0, 60.0, 69.0, 75.0, 500.0])
def test_probabilities_are_exact_wherever_the_row_s_maximum_lies(peak: float) -> None:
    """Near 0 the softmax skips the shift by the maximum; far from it, it shifts: both exact."""
    n_vocab = 262_144
    rng = np.random.default_rng(int(peak) + 1000)
    logits = rng.normal(0.0, 4.0, n_vocab).astype(np.float32)
    logits += np.float32(peak) - logits.max()
    reader = ProbabilityReader(n_vocab)
    top = reader.read(logits)
    exact = np.exp(logits.astype(np.float64) - float(logits.max()))
    exact /= exact.sum()
    np.testing.assert_allclose(top.probs, exact[top.ids], rtol=2e-5)
    assert np.isfinite(top.probs).all() and top.probs[0] > 0
    low = int(np.argmin(logits))
    assert reader.prob_of(low) == pytest.approx(exact[low], rel=1e-3, abs=1e-30)
