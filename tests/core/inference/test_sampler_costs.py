"""The measured sampler costs and the notes the sampling panel shows beside a slider."""

from __future__ import annotations

import pytest

from app.core.inference.sampler_costs import (
    CASES,
    COSTS,
    LARGE_VOCAB,
    SMALL_VOCAB,
    classify,
    cost_note,
)
from app.core.inference.sampling import PRESETS, SamplingSettings


@pytest.mark.parametrize("key", sorted(CASES))
def test_every_measured_case_is_classified_as_itself(key: str) -> None:
    assert classify(CASES[key]) == key


def test_every_case_has_a_measured_cost_at_both_sizes() -> None:
    for key, cost in COSTS.items():
        assert cost.small_us > 0 and cost.large_us > 0, key
        assert cost.us_at(SMALL_VOCAB) == pytest.approx(cost.small_us)
        assert cost.us_at(LARGE_VOCAB) == pytest.approx(cost.large_us)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("n_vocab", [SMALL_VOCAB, LARGE_VOCAB])
def test_presets_and_top_k_settings_earn_no_note(preset: str, n_vocab: int) -> None:
    assert cost_note(PRESETS[preset], n_vocab) is None
    assert cost_note(SamplingSettings(temperature=0.0), n_vocab) is None


def test_top_p_with_top_k_off_on_a_large_vocabulary_is_called_slow_beside_its_sliders() -> None:
    settings = SamplingSettings(top_k=0, top_p=0.9)
    note = cost_note(settings, LARGE_VOCAB)
    assert note is not None
    assert note.fields == ("top_k", "top_p")
    assert "top-p with top-k off" in note.text and "262,144" in note.text
    assert "Set top-k to 40" in note.text
    assert note.extra_us >= 500
    # the same setting costs less on a smaller vocabulary
    small = COSTS["top_p_no_top_k"].us_at(SMALL_VOCAB)
    assert small < COSTS["top_p_no_top_k"].us_at(LARGE_VOCAB)
