"""The seam between Hearth and whatever runs a model: the `Backend` protocol.

The workers, the CLI and (later) the API server drive a backend through this protocol
only. The in-process llama.cpp `Engine` is the first implementation; a client of a remote
OpenAI-compatible server is another. Loading differs per kind (a GGUF path and
`LoadOptions`, or a URL and a model name), so it is not part of the protocol; everything
after a load is.

What a backend can and cannot do is declared in `Capabilities`, so the UI can say what is
missing ("not available from this server") instead of hiding it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from app.core.inference.events import GenerationEvent
from app.core.inference.kv_snapshot import KVSnapshot
from app.core.inference.messages import Message
from app.core.inference.prompt import OverflowPolicy, PromptPlan
from app.core.inference.sampling import SamplingSettings, SettingsHolder

ALL_SAMPLERS = frozenset(
    {
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "repeat_last_n",
        "presence_penalty",
        "frequency_penalty",
        "mirostat",
        "seed",
        "max_tokens",
        "stop",
    }
)
"""The `SamplingSettings` fields a backend may honour."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond streaming a reply.

    Attributes:
        token_probabilities: Each `TokenEvent` carries the chosen token's probability and
            the top alternatives.
        full_distribution: The whole next-token distribution can be read (the sampling
            explorer needs it).
        kv_snapshots: `save_snapshot` / `restore_snapshot` / `clear_cache` work.
        exact_token_counts: `tokenize` and `plan` use the model's own tokenizer (else
            counts are estimates).
        live_settings: Sampler changes reach a reply already being generated.
        samplers: The `SamplingSettings` fields it honours; the UI disables the others.
    """

    token_probabilities: bool
    full_distribution: bool
    kv_snapshots: bool
    exact_token_counts: bool
    live_settings: bool
    samplers: frozenset[str] = ALL_SAMPLERS

    def missing(self) -> list[str]:
        """Plain-language names of what this backend cannot do (for notices and tooltips)."""
        names = {
            "token_probabilities": "token probabilities",
            "full_distribution": "the full next-token distribution",
            "kv_snapshots": "saved KV caches",
            "exact_token_counts": "exact token counts",
            "live_settings": "sampler changes during a reply",
        }
        return [text for field, text in names.items() if not getattr(self, field)]


LOCAL_LLAMA_CPP = Capabilities(
    token_probabilities=True,
    full_distribution=True,
    kv_snapshots=True,
    exact_token_counts=True,
    live_settings=True,
)
"""What the in-process llama.cpp engine offers: everything."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that can tokenize, plan prompts and stream replies.

    Not thread-safe: one thread drives it. `cancel.set()` and `SettingsHolder.set()` may
    come from other threads while a reply runs.
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window, in tokens."""
        ...

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Token ids of `text`."""
        ...

    def token_text(self, token_id: int) -> str:
        """Readable text of one token."""
        ...

    def plan(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
    ) -> PromptPlan:
        """Render, count and fit `messages` without generating."""
        ...

    def generate(
        self,
        messages: Sequence[Message],
        settings: SettingsHolder | SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        top_n: int = 10,
    ) -> Iterator[GenerationEvent]:
        """Stream the reply to `messages`: prefill events, tokens, then `GenerationDone`.

        Each `TokenEvent` carries up to `top_n` (0 to 20) alternatives where the backend
        has `token_probabilities`."""
        ...

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """Tokens whose keys and values are cached now (empty without a KV cache)."""
        ...

    def save_snapshot(self) -> KVSnapshot:
        """The KV cache as bytes (only with `capabilities.kv_snapshots`)."""
        ...

    def restore_snapshot(self, snapshot: KVSnapshot) -> bool:
        """Load a saved KV cache; False if it does not fit (only with `kv_snapshots`)."""
        ...

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        ...
