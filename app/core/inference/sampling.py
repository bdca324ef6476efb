"""Sampler settings: an immutable value, its valid ranges, presets, and a live holder.

The engine reads a `SettingsHolder` at every token, so the GUI can replace the settings
mid-reply and steer the rest of it. Replacing the reference is atomic in CPython.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from app.core.errors import InvalidSettingError

MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "pick a random seed" sentinel
PRUNE_LIMIT = 1024
"""The largest top-k for which the chain is handed only the tokens it can keep
(`candidates`); a larger one gains little over the whole row."""


def _spec(label: str, low: float, high: float, *, low_open: bool = False) -> dict[str, Any]:
    return {"label": label, "low": low, "high": high, "low_open": low_open}


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen, and when a reply stops.

    Neutral values switch a sampler off: top_k 0, top_p 1, min_p 0, typical_p 1,
    repeat_penalty 1, presence/frequency 0, mirostat 0. Temperature 0 is greedy.
    `seed=None` draws a fresh random seed for every reply; `max_tokens=None` lets a
    reply run until end of turn or a full context.
    """

    temperature: float = field(default=0.8, metadata=_spec("temperature", 0.0, 5.0))
    top_k: int = field(default=40, metadata=_spec("top-k", 0, 1_000_000))
    top_p: float = field(default=0.95, metadata=_spec("top-p", 0.0, 1.0, low_open=True))
    min_p: float = field(default=0.05, metadata=_spec("min-p", 0.0, 1.0))
    typical_p: float = field(default=1.0, metadata=_spec("typical-p", 0.0, 1.0, low_open=True))
    repeat_penalty: float = field(
        default=1.1, metadata=_spec("repeat penalty", 0.0, 10.0, low_open=True)
    )
    repeat_last_n: int = field(default=64, metadata=_spec("repeat window", -1, 1_000_000))
    presence_penalty: float = field(default=0.0, metadata=_spec("presence penalty", -2.0, 2.0))
    frequency_penalty: float = field(default=0.0, metadata=_spec("frequency penalty", -2.0, 2.0))
    mirostat: int = field(default=0, metadata=_spec("mirostat", 0, 2))
    mirostat_tau: float = field(default=5.0, metadata=_spec("mirostat tau", 0.0, 100.0))
    mirostat_eta: float = field(
        default=0.1, metadata=_spec("mirostat eta", 0.0, 1.0, low_open=True)
    )
    seed: int | None = field(default=None, metadata=_spec("seed", 0, MAX_SEED))
    max_tokens: int | None = field(default=1024, metadata=_spec("max tokens", 1, 10_000_000))
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            if "label" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None and f.name in ("seed", "max_tokens"):
                continue
            _check_range(value, f.metadata)
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise InvalidSettingError("stop strings must be non-empty text")

    @property
    def is_greedy(self) -> bool:
        """True when the most likely token is always picked."""
        return self.temperature <= 0.0

    @property
    def uses_penalties(self) -> bool:
        """True when the chain has llama.cpp's penalties sampler (repeat, presence,
        frequency over a non-empty window)."""
        active = self.repeat_penalty != 1.0 or self.presence_penalty or self.frequency_penalty
        return bool(active) and self.repeat_last_n != 0

    def penalty_window(self, n_ctx: int) -> int:
        """How many recent tokens the penalties look at in a context of `n_ctx` (0: the
        chain has no penalties sampler)."""
        if not self.uses_penalties:
            return 0
        return max(0, n_ctx if self.repeat_last_n < 0 else self.repeat_last_n)

    @property
    def survivors(self) -> int | None:
        """How many tokens the chain's top-k keeps (1 when greedy), when only those need
        to reach it (`candidates`); None when it needs the whole row (top-k off or above
        `PRUNE_LIMIT`, mirostat)."""
        if self.mirostat:
            return None
        if self.is_greedy:
            return 1
        return self.top_k if 0 < self.top_k <= PRUNE_LIMIT else None

    def with_changes(self, **changes: Any) -> SamplingSettings:
        """A copy with some fields replaced (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (stop as a list)."""
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingSettings:
        """Inverse of `to_dict`; unknown keys are ignored so old files still load."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "stop" in values:
            values["stop"] = tuple(values["stop"])
        return cls(**values)


def _check_range(value: Any, spec: Mapping[str, Any]) -> None:
    label, low, high = spec["label"], spec["low"], spec["high"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSettingError(f"{label} must be a number (got {value!r})")
    if isinstance(low, int) and isinstance(high, int) and not isinstance(value, int):
        raise InvalidSettingError(f"{label} must be a whole number (got {value})")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidSettingError(f"{label} must be a finite number (got {value})")
    too_low = value <= low if spec["low_open"] else value < low
    if too_low or value > high:
        if spec["low_open"]:
            rule = f"greater than {low} and at most {high}"
        else:
            rule = f"between {low} and {high}"
        raise InvalidSettingError(f"{label} must be {rule} (got {value})")


PRESETS: dict[str, SamplingSettings] = {
    "Precise": SamplingSettings(temperature=0.2, top_k=40, top_p=0.9, min_p=0.05),
    "Balanced": SamplingSettings(),
    "Creative": SamplingSettings(
        temperature=1.1, top_k=100, top_p=0.98, min_p=0.02, repeat_penalty=1.05
    ),
}


class SettingsHolder:
    """The current settings of one reply, replaceable from any thread.

    The engine calls `get()` before every token; the GUI calls `set()` when a slider moves.
    Whoever passes the settings on (the engine host) can `watch` for changes.
    """

    def __init__(self, settings: SamplingSettings | None = None) -> None:
        self._settings = settings if settings is not None else SamplingSettings()
        self._lock = threading.Lock()
        self._watchers: tuple[Callable[[], None], ...] = ()

    def get(self) -> SamplingSettings:
        """The settings in force now."""
        return self._settings

    def set(self, settings: SamplingSettings) -> None:
        """Replace the settings; the next token uses them."""
        with self._lock:
            self._settings = settings
        self._changed()

    def update(self, **changes: Any) -> SamplingSettings:
        """Replace some fields atomically and return the new settings."""
        with self._lock:
            self._settings = settings = self._settings.with_changes(**changes)
        self._changed()
        return settings

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the changing thread) after each `set` or `update`."""
        with self._lock:
            self._watchers = (*self._watchers, callback)

    def unwatch(self, callback: Callable[[], None]) -> None:
        """Stop calling `callback`."""
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w != callback)

    @property
    def watched(self) -> bool:
        """Whether anyone watches for changes (the engine host, while a reply runs)."""
        return bool(self._watchers)

    def _changed(self) -> None:
        for callback in self._watchers:
            callback()
