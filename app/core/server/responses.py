"""OpenAI response bodies: completions, stream chunks, usage and logprobs."""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from app.core.inference.events import GenerationStats, StopReason
from app.core.server.scheduler import TokenPiece

_FINISH = {
    StopReason.END_OF_TURN: "stop",
    StopReason.STOP_STRING: "stop",
    StopReason.CANCELLED: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.CONTEXT_FULL: "length",
}
_FLOOR = -9999.0  # OpenAI's log probability for "never"


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else _FLOOR


def finish_reason(reason: StopReason) -> str:
    """OpenAI's finish_reason for a stop reason."""
    return _FINISH[reason]


def usage(prompt: int, cached: int, completion: int) -> dict[str, Any]:
    """The usage object (prompt, cached and completion tokens)."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def usage_of(stats: GenerationStats) -> dict[str, Any]:
    """Usage from a finished generation's stats."""
    return usage(stats.prompt_tokens, stats.cached_tokens, stats.completion_tokens)


def chat_logprob(token: TokenPiece, top: int) -> dict[str, Any]:
    """One entry of `choices[0].logprobs.content`."""
    event = token.event
    return {
        "token": token.piece.decode("utf-8", errors="replace"),
        "logprob": _logprob(event.prob),
        "bytes": list(token.piece),
        "top_logprobs": [
            {
                "token": alt.text,
                "logprob": _logprob(alt.prob),
                "bytes": list(alt.text.encode("utf-8", errors="replace")),
            }
            for alt in event.alternatives[:top]
        ],
    }


@dataclass
class CompletionLogprobs:
    """The legacy completions `logprobs` object, built token by token."""

    top: int
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, token: TokenPiece, offset: int) -> dict[str, Any]:
        """Add one token; return the object for just this token (for a stream chunk)."""
        text = token.piece.decode("utf-8", errors="replace")
        lp = _logprob(token.event.prob)
        alts = {alt.text: _logprob(alt.prob) for alt in token.event.alternatives[: self.top]}
        self.tokens.append(text)
        self.token_logprobs.append(lp)
        self.top_logprobs.append(alts)
        self.text_offset.append(offset)
        return {
            "tokens": [text],
            "token_logprobs": [lp],
            "top_logprobs": [alts],
            "text_offset": [offset],
        }

    def body(self) -> dict[str, Any]:
        """The whole object."""
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


@dataclass
class Envelope:
    """The fields every response and chunk of one request shares."""

    kind: str  # "chat" or "completion"
    model: str
    fingerprint: str
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{secrets.token_hex(12)}"
        self.created = self.created or int(time.time())

    def head(self, chunk: bool) -> dict[str, Any]:
        """id, object, created, model, system_fingerprint."""
        if self.kind == "chat":
            obj = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def chunk(
        self,
        text: str | None,
        *,
        role: bool = False,
        logprobs: Any = None,
        finish: str | None = None,
    ) -> dict[str, Any]:
        """One streamed chunk with one choice."""
        choice: dict[str, Any]
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            choice = {
                "index": 0,
                "text": text or "",
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        return {**self.head(True), "choices": [choice]}

    def usage_chunk(self, used: dict[str, Any]) -> dict[str, Any]:
        """The last streamed chunk when stream_options.include_usage is set."""
        return {**self.head(True), "choices": [], "usage": used}

    def whole(self, text: str, logprobs: Any, finish: str, used: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed response."""
        choice: dict[str, Any]
        if self.kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {**self.head(False), "choices": [choice], "usage": used}
