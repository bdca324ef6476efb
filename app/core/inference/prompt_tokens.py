"""Tokenize a rendered prompt so that only the chat template's own markers are control tokens.

Text that people, files, imports and API clients supply is plain text, even when it spells
a control token such as `<|im_end|>`: otherwise typing `<|im_end|>\\n<|im_start|>system`
forges a system turn. Before rendering, every control-token spelling inside a message is
swapped for a unique placeholder; the template renders as usual (so templates that trim or
split a message's text still work); the rendered text is then cut at the template's own
control tokens, exactly where llama.cpp's `parse_special` would cut it, and the text
between them, with the placeholders put back, is tokenized with `parse_special=False`.

Tokens therefore match llama.cpp's own `parse_special=True` tokenization of the same text
whenever the messages hold no control-token spelling (the same fragments, the same SPM
space prefix after each marker), and differ only where a message spelled one.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate

Piece = str | int  # raw text, or a control token's id


@dataclass(frozen=True)
class ControlTokens:
    """The spellings of a vocabulary's control tokens.

    Args:
        ids: Text -> token id of every control (and unknown) token with a spelling.
        lstrip: Texts of tokens that swallow the whitespace before them.
        rstrip: Texts of tokens that swallow the whitespace after them.
    """

    ids: Mapping[str, int]
    lstrip: frozenset[str] = frozenset()
    rstrip: frozenset[str] = frozenset()

    def finder(self, extra: Iterable[str] = ()) -> _Finder:
        """A scanner for these spellings plus `extra` strings."""
        return _Finder([*self.ids, *extra])


class _Finder:
    """Leftmost, then longest, occurrences of a set of strings (fast for many strings)."""

    def __init__(self, texts: Iterable[str]) -> None:
        by_first: dict[str, list[str]] = {}
        for text in texts:
            if text:
                by_first.setdefault(text[0], []).append(text)
        for group in by_first.values():
            group.sort(key=len, reverse=True)
        self._by_first = by_first
        firsts = "".join(re.escape(c) for c in sorted(by_first))
        self._starts = re.compile(f"[{firsts}]") if firsts else None

    def find(self, text: str) -> list[tuple[int, str]]:
        """(position, matched string) of each occurrence, left to right, not overlapping."""
        found: list[tuple[int, str]] = []
        if self._starts is None:
            return found
        pos = 0
        while True:
            m = self._starts.search(text, pos)
            if m is None:
                return found
            at = m.start()
            for candidate in self._by_first[text[at]]:
                if text.startswith(candidate, at):
                    found.append((at, candidate))
                    pos = at + len(candidate)
                    break
            else:
                pos = at + 1


def protect(
    messages: Sequence[Message], controls: ControlTokens
) -> tuple[list[Message], dict[str, str]]:
    """Messages with every control-token spelling replaced by a placeholder.

    Returns the new messages and placeholder -> original text.
    """
    nonce = secrets.token_hex(6)
    finder = controls.finder()
    placeholders: dict[str, str] = {}
    by_text: dict[str, str] = {}
    out: list[Message] = []
    for message in messages:
        hits = finder.find(message.content)
        if not hits:
            out.append(message)
            continue
        parts: list[str] = []
        pos = 0
        for at, text in hits:
            mark = by_text.get(text)
            if mark is None:
                mark = f"\ue000{nonce}.{len(by_text)}\ue001"
                by_text[text] = mark
                placeholders[mark] = text
            parts += [message.content[pos:at], mark]
            pos = at + len(text)
        parts.append(message.content[pos:])
        out.append(Message(message.role, "".join(parts)))
    return out, placeholders


def split_rendered(
    text: str, controls: ControlTokens, placeholders: Mapping[str, str]
) -> list[Piece]:
    """Cut rendered text into raw text and the template's own control tokens."""
    pieces: list[Piece] = []
    raw: list[str] = []
    pos = 0
    strip_next = False
    for at, found in controls.finder(placeholders).find(text):
        chunk = text[pos:at]
        if strip_next:
            chunk = chunk.lstrip()
        raw.append(chunk)
        pos = at + len(found)
        strip_next = False
        if found in placeholders:
            raw.append(placeholders[found])
            continue
        if found in controls.lstrip and raw:
            raw[-1] = raw[-1].rstrip()
        if any(raw):
            pieces.append("".join(raw))
        raw = []
        pieces.append(controls.ids[found])
        strip_next = found in controls.rstrip
    tail = text[pos:]
    raw.append(tail.lstrip() if strip_next else tail)
    if any(raw):
        pieces.append("".join(raw))
    return pieces


def encode_prompt(
    template: ChatTemplate,
    messages: Sequence[Message],
    controls: ControlTokens,
    tokenize_plain: Callable[[str], list[int]],
    bos: int | None,
    *,
    cancel: threading.Event | None = None,
) -> list[int]:
    """The prompt tokens for `messages`: template markers special, all else plain text.

    Args:
        template: The chat template.
        messages: The conversation.
        controls: The vocabulary's control tokens.
        tokenize_plain: Tokens of raw text (no BOS, `parse_special=False`).
        bos: The BOS id to put first when the model wants one and the template did not
            write it, else None.
        cancel: Stops the render (raises `PromptCancelled`).
    """
    safe, placeholders = protect(messages, controls)
    rendered = template.render(safe, cancel=cancel)
    pieces = split_rendered(rendered, controls, placeholders)
    tokens: list[int] = []
    if bos is not None and not (pieces and pieces[0] == bos):
        tokens.append(bos)
    for piece in pieces:
        if isinstance(piece, int):
            tokens.append(piece)
        else:
            tokens.extend(tokenize_plain(piece))
    return tokens
