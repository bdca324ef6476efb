"""Sampler settings: ranges, presets, serialisation, the live holder."""

from __future__ import annotations

import threading

import pytest

from app.core.errors import InvalidSettingError
from app.core.inference.sampling import PRESETS, SamplingSettings, SettingsHolder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": -1.0}, "temperature must be between 0.0 and 5.0 (got -1.0)"),
        ({"top_p": 2.0}, "top-p must be greater than 0.0 and at most 1.0 (got 2.0)"),
        ({"top_p": 0.0}, "top-p"),
        ({"top_k": -1}, "top-k"),
        ({"top_k": 1.5}, "top-k must be a whole number"),
        ({"min_p": 1.5}, "min-p"),
        ({"repeat_penalty": 0.0}, "repeat penalty"),
        ({"mirostat": 3}, "mirostat"),
        ({"seed": -1}, "seed"),
        ({"max_tokens": 0}, "max tokens"),
        ({"temperature": float("nan")}, "finite"),
        ({"stop": ("",)}, "stop strings"),
    ],
)
def test_out_of_range_values_are_refused_with_the_name(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SamplingSettings(**changes)  # type: ignore[arg-type]


def test_none_means_random_seed_and_unlimited_reply() -> None:
    s = SamplingSettings(seed=None, max_tokens=None)
    assert s.seed is None and s.max_tokens is None


def test_round_trip_through_dict() -> None:
    s = SamplingSettings(temperature=0.3, stop=("###", "\nUser:"), seed=5)
    assert SamplingSettings.from_dict(s.to_dict()) == s
    assert SamplingSettings.from_dict({**s.to_dict(), "future_key": 1}) == s


def test_presets_are_distinct_and_valid() -> None:
    assert {"Precise", "Balanced", "Creative"} <= set(PRESETS)
    temps = [PRESETS[n].temperature for n in ("Precise", "Balanced", "Creative")]
    assert temps == sorted(temps) and len(set(temps)) == 3


def test_holder_updates_atomically_from_other_threads() -> None:
    holder = SettingsHolder(SamplingSettings(top_k=1))
    seen = holder.get()
    thread = threading.Thread(target=holder.update, kwargs={"top_k": 7})
    thread.start()
    thread.join()
    assert seen.top_k == 1
    assert holder.get().top_k == 7
    with pytest.raises(InvalidSettingError):
        holder.update(top_p=3.0)
    assert holder.get().top_k == 7


def test_a_watcher_hears_every_change_from_the_changing_thread_until_it_stops() -> None:
    holder = SettingsHolder(SamplingSettings(top_k=1))
    heard: list[tuple[int, str]] = []

    def watcher() -> None:
        heard.append((holder.get().top_k, threading.current_thread().name))

    holder.watch(watcher)
    assert holder.watched
    holder.set(SamplingSettings(top_k=2))
    thread = threading.Thread(target=holder.update, kwargs={"top_k": 3}, name="slider")
    thread.start()
    thread.join()
    with pytest.raises(InvalidSettingError):
        holder.update(top_p=3.0)  # refused: no change, nothing to hear
    holder.unwatch(watcher)
    holder.set(SamplingSettings(top_k=4))
    assert not holder.watched
    assert heard == [(2, threading.current_thread().name), (3, "slider")]
