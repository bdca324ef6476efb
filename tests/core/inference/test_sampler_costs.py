"""The measured sampler costs and the notes the sampling panel shows beside a slider."""

from __future__ import annotations

import pytest

from app.core.inference.sampler_costs import (
    CASES,
    COSTS,
    LARGE_VOCAB,
    SMALL_VOCAB,
    classify,
    cost_notes,
    estimate_us,
)
from app.core.inference.sampling import PRESETS, SamplingSettings

NO_PENALTY = {"repeat_penalty": 1.0}


@pytest.mark.parametrize("key", sorted(CASES))
def test_every_measured_case_is_classified_as_itself(key: str) -> None:
    assert classify(CASES[key]) == key


def test_every_case_has_a_measured_cost_at_both_sizes() -> None:
    for key, cost in COSTS.items():
        assert cost.small_us > 0 and cost.large_us > 0, key
        assert cost.us_at(SMALL_VOCAB) == pytest.approx(cost.small_us)
        assert cost.us_at(LARGE_VOCAB) == pytest.approx(cost.large_us)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_without_penalties_earn_no_note_at_either_size(preset: str) -> None:
    settings = PRESETS[preset].with_changes(**NO_PENALTY)
    assert cost_notes(settings, SMALL_VOCAB) == ()
    assert cost_notes(settings, LARGE_VOCAB) == ()
    assert cost_notes(SamplingSettings(temperature=0.0, **NO_PENALTY), LARGE_VOCAB) == ()


def test_top_p_with_top_k_off_on_a_large_vocabulary_is_called_slow_beside_its_sliders() -> None:
    settings = SamplingSettings(top_k=0, top_p=0.9, **NO_PENALTY)
    [note] = cost_notes(settings, LARGE_VOCAB)
    assert note.fields == ("top_k", "top_p")
    assert "top-p with top-k off" in note.text and "262,144" in note.text
    assert "Set top-k to 40" in note.text
    assert note.extra_us >= 1000


def test_penalties_are_noted_beside_their_own_sliders_and_add_to_the_estimate() -> None:
    with_penalty = SamplingSettings(top_k=0, top_p=0.9, repeat_penalty=1.1)
    notes = cost_notes(with_penalty, LARGE_VOCAB)
    assert [n.fields for n in notes] == [
        ("top_k", "top_p"),
        ("repeat_penalty", "presence_penalty", "frequency_penalty"),
    ]
    plain = with_penalty.with_changes(**NO_PENALTY)
    assert estimate_us(with_penalty, LARGE_VOCAB) > estimate_us(plain, LARGE_VOCAB)
    # a zero window turns the penalties off
    assert len(cost_notes(with_penalty.with_changes(repeat_last_n=0), LARGE_VOCAB)) == 1


def test_penalties_cost_nothing_worth_a_note_once_top_k_or_greedy_prunes_the_row() -> None:
    """With top-k on (or greedy), only the survivors reach the penalties sampler."""
    for settings in (
        SamplingSettings(),  # top-k 40, repeat 1.1
        SamplingSettings(temperature=0.0, repeat_penalty=1.3),
        SamplingSettings(top_k=500, presence_penalty=1.0, frequency_penalty=1.0),
    ):
        assert settings.survivors is not None and settings.uses_penalties
        assert cost_notes(settings, LARGE_VOCAB) == ()
    assert estimate_us(SamplingSettings(), LARGE_VOCAB) < 500
    whole = SamplingSettings(top_k=0, top_p=1.0, min_p=0.0)
    assert estimate_us(whole, LARGE_VOCAB) > estimate_us(SamplingSettings(), LARGE_VOCAB) + 3000
