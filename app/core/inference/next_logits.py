"""One row of next-token logits handed out of the engine, with what the explorer needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the GUI holds this type before any logits exist: no numpy at start-up
    import numpy as np
    import numpy.typing as npt

TEXTS_FOR_TOP = 512
"""How many of the likeliest tokens come with their text."""


@dataclass(frozen=True)
class NextLogits:
    """The logits for the position after a prompt (and an optional start of the reply).

    Attributes:
        logits: A copy of the whole vocabulary's row (float32).
        tokens: Every token before that position (prompt, then `continue_with`): the
            penalties' history.
        prompt_tokens: How many of `tokens` are the rendered prompt.
        cached: How many of `tokens` were already in the KV cache (not read again).
        dropped: Message indices the overflow policy left out.
        n_ctx: The context size.
        texts: Token id -> readable text for the likeliest tokens and the history.
        elapsed_ms: How long it took, reading included.
    """

    logits: npt.NDArray[np.float32]
    tokens: tuple[int, ...]
    prompt_tokens: int
    cached: int
    dropped: tuple[int, ...]
    n_ctx: int
    texts: Mapping[int, str]
    elapsed_ms: float

    @property
    def position(self) -> int:
        """The position whose token these logits predict (0-based)."""
        return len(self.tokens)

    @property
    def reply_tokens(self) -> int:
        """How many reply tokens were given before this position."""
        return len(self.tokens) - self.prompt_tokens


def texts_for(
    logits: npt.NDArray[np.float32], history: Sequence[int], text_of: Callable[[int], str]
) -> dict[int, str]:
    """Texts of the likeliest tokens and of the history's tokens (penalties move them)."""
    import numpy as np

    n = logits.shape[0]
    k = min(TEXTS_FOR_TOP, n)
    best = np.argpartition(-logits, k - 1)[:k] if k < n else np.arange(n)
    ids = {int(t) for t in best} | {int(t) for t in history[-1024:] if 0 <= t < n}
    return {t: text_of(t) for t in sorted(ids)}
