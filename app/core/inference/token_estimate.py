"""Token counts where no tokenizer is at hand (a server without /tokenize): an estimate
from the text's length, cheap enough for every keystroke and free of network code."""

from __future__ import annotations

import math

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (an estimate: the server renders)."""


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is: a quarter of its UTF-8 bytes, at least 1."""
    return max(1, math.ceil(len(text.encode("utf-8", "replace")) / 4)) if text else 0
