"""What a generation yields: prefill progress, one event per token, then the stats."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, NamedTuple

from app.core.inference.sampling import SamplingSettings


class StopReason(str, Enum):
    """Why a reply ended."""

    END_OF_TURN = "end_of_turn"
    STOP_STRING = "stop_string"
    MAX_TOKENS = "max_tokens"
    CANCELLED = "cancelled"
    CONTEXT_FULL = "context_full"
    INTERRUPTED = "interrupted"
    """The connection to a remote server broke mid-reply; the text so far is kept."""


class TokenAlternative(NamedTuple):
    """A candidate for the next token and the model's probability for it (temperature 1).

    A named tuple, not a frozen dataclass: ten are made per token between two decodes,
    where a frozen dataclass's `__init__` (one `object.__setattr__` per field) costs four
    times as much.
    """

    token_id: int
    text: str
    logit: float
    prob: float


@dataclass(frozen=True)
class PrefillStarted:
    """The prompt is ready and its new tokens are about to be read.

    `dropped` are indices (into the messages given) that the overflow policy left out.
    """

    prompt_tokens: int
    cached_tokens: int
    dropped: tuple[int, ...]


@dataclass(frozen=True)
class PrefillProgress:
    """`done` of `total` new prompt tokens have been read into the KV cache."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token.

    `text` is what this token adds to the visible reply: whole UTF-8 characters only, so it
    can be empty (half a character, or text held back while it may be a stop string) and a
    later event then carries it. The concatenation of all `text` is the reply.
    `settings` are the sampler settings it was chosen with (the same object until they
    change).
    """

    token_id: int
    text: str
    prob: float
    alternatives: tuple[TokenAlternative, ...]
    settings: SamplingSettings | None = None


@dataclass(frozen=True)
class GenerationStats:
    """Timings and counts of one reply."""

    prompt_tokens: int
    cached_tokens: int
    prefill_ms: float
    prefill_tps: float
    ttft_ms: float
    completion_tokens: int
    decode_ms: float
    decode_tps: float
    stop_reason: StopReason
    seed: int
    dropped_messages: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        data["dropped_messages"] = list(self.dropped_messages)
        return data


@dataclass(frozen=True)
class GenerationDone:
    """The last event of every generation, cancelled ones included.

    `text` is the whole reply; `tail` is the part of it no `TokenEvent` carried (text held
    back until the end); `tokens` are the generated ids, end-of-turn excluded. `note` says
    what a person should know about how it ended (why a remote reply was interrupted).
    """

    text: str
    tail: str
    tokens: tuple[int, ...]
    stats: GenerationStats
    note: str = ""

    @classmethod
    def cancelled_before_prompt(cls) -> GenerationDone:
        """The end of a reply stopped while its prompt was being prepared (nothing read)."""
        stats = GenerationStats(0, 0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, StopReason.CANCELLED, 0)
        return cls(text="", tail="", tokens=(), stats=stats)


GenerationEvent = PrefillStarted | PrefillProgress | TokenEvent | GenerationDone
