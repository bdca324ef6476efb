"""When and how soon a dropped or stalled download tries again.

A transfer that breaks mid-file (the connection drops, or no byte arrives for `stall_s`
seconds) reconnects by itself with a Range request for the rest, after an exponential
backoff: 1 s, 2 s, 4 s... up to `max_delay_s`, at most `retries` times. Tests and
people on odd networks tune it with environment variables.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

RETRIES_ENV = "HEARTH_DOWNLOAD_RETRIES"
STALL_ENV = "HEARTH_DOWNLOAD_STALL_S"
BACKOFF_ENV = "HEARTH_DOWNLOAD_BACKOFF_S"


@dataclass(frozen=True)
class RetryPolicy:
    """Automatic retries of a broken transfer.

    Attributes:
        retries: Reconnections after the first try (0: fail at the first drop).
        first_delay_s: Wait before the first retry; doubles at each next one.
        max_delay_s: The longest wait between two tries.
        stall_s: A transfer that receives no byte for this long is a stall: reconnect.
    """

    retries: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stall_s: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more (got {self.retries})")
        for name in ("first_delay_s", "max_delay_s", "stall_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "stall_s" and value == 0):
                raise ValueError(f"{name} must be a positive number of seconds (got {value})")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** max(0, retry - 1)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        """The default policy, with HEARTH_DOWNLOAD_RETRIES, HEARTH_DOWNLOAD_STALL_S and
        HEARTH_DOWNLOAD_BACKOFF_S applied where set (a bad value is logged and ignored)."""
        env = os.environ if env is None else env
        default = cls()
        fields: dict[str, float | int] = {}
        for name, key, kind in (
            (RETRIES_ENV, "retries", int),
            (STALL_ENV, "stall_s", float),
            (BACKOFF_ENV, "first_delay_s", float),
        ):
            text = env.get(name)
            if text is None:
                continue
            try:
                fields[key] = kind(text)
            except ValueError:
                log.warning("ignoring %s=%r: not a number", name, text)
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except ValueError as exc:
            log.warning("ignoring the download retry settings from the environment: %s", exc)
            return default
