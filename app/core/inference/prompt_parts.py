"""The exact prompt a model reads, split into its parts with token counts.

The prompt's tokens are the engine's (`Vocabulary.encode_prompt` after the drop-oldest
rule, `fit_messages`). Each token is shown as its text, control tokens by their spelling
(`<|im_start|>`), so the template's markers are visible. Each message's text is then
found in that display text, in order, and every token that overlaps a message's text
belongs to that message; all other tokens are the template's overhead (role markers,
separators, BOS, the opening of the reply). The parts therefore always add up to the
prompt's token count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate, fit_messages, reply_budget

if TYPE_CHECKING:  # the context view imports this module; llama.cpp comes with a model
    from app.core.inference.vocab import Vocabulary

TEMPLATE = "template"


@dataclass(frozen=True)
class PromptPart:
    """A run of prompt tokens: one message's text, or template overhead between them.

    `kind` is the message's role ("system", "user", "assistant") or "template";
    `message` the index into the messages given (None for template overhead).
    """

    kind: str
    message: int | None
    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class PromptParts:
    """The prompt split into parts, and how it fits the window.

    `dropped` are the message indices the drop-oldest policy leaves out (None when even
    the system prompt and the last message alone do not fit: then `parts` show them all).
    """

    parts: tuple[PromptPart, ...]
    tokens: tuple[int, ...]
    n_ctx: int
    reply_budget: int
    dropped: tuple[int, ...] | None

    @property
    def total(self) -> int:
        """Prompt tokens."""
        return len(self.tokens)

    @property
    def template_tokens(self) -> int:
        """Tokens of template overhead."""
        return sum(len(p.tokens) for p in self.parts if p.kind == TEMPLATE)

    def message_tokens(self, index: int) -> int:
        """Tokens of message `index`'s own text."""
        return sum(len(p.tokens) for p in self.parts if p.message == index)

    def share(self, n_tokens: int) -> float:
        """`n_tokens` as a fraction of the context window."""
        return n_tokens / self.n_ctx if self.n_ctx > 0 else 0.0


def visible_text(vocab: Vocabulary) -> Callable[[int], str]:
    """Token text with control tokens shown by their spelling."""
    spelled = {token: text for text, token in vocab.controls.ids.items()}

    def text(token: int) -> str:
        return spelled.get(token) or vocab.token_text(token)

    return text


def split_prompt(
    messages: Sequence[Message], tokens: Sequence[int], text_of: Callable[[int], str]
) -> tuple[PromptPart, ...]:
    """Cut `tokens` (the prompt for `messages`) into message and template parts."""
    pieces = [text_of(int(t)) for t in tokens]
    display = "".join(pieces)
    spans: list[tuple[int, int, int]] = []  # (start, end, message index)
    cursor = 0
    for index, message in enumerate(messages):
        for needle in (message.content, message.content.strip()):
            if not needle:
                break
            at = display.find(needle, cursor)
            if at >= 0:
                spans.append((at, at + len(needle), index))
                cursor = at + len(needle)
                break
    owners: list[int | None] = []
    offset = 0
    span_i = 0
    for piece in pieces:
        start, end = offset, offset + len(piece)
        offset = end
        while span_i < len(spans) and spans[span_i][1] <= start:
            span_i += 1
        owner = None
        if span_i < len(spans):
            s_start, s_end, index = spans[span_i]
            if start < s_end and end > s_start and end > start:
                owner = index
        owners.append(owner)
    parts: list[PromptPart] = []
    run_start = 0
    for i in range(1, len(pieces) + 1):
        if i == len(pieces) or owners[i] != owners[run_start]:
            owner = owners[run_start]
            kind = TEMPLATE if owner is None else messages[owner].role
            parts.append(
                PromptPart(
                    kind,
                    owner,
                    "".join(pieces[run_start:i]),
                    tuple(int(t) for t in tokens[run_start:i]),
                )
            )
            run_start = i
    return tuple(parts)


def describe_prompt(
    vocab: Vocabulary,
    messages: Sequence[Message],
    *,
    n_ctx: int,
    max_tokens: int | None,
    template: ChatTemplate | None = None,
    cancel: threading.Event | None = None,
) -> PromptParts:
    """The prompt the engine would read for `messages`, split into parts.

    Raises:
        ChatTemplateError: The template rejects these messages.
        PromptCancelled: `cancel` was set while rendering.
    """
    chat = template or vocab.template
    budget = reply_budget(max_tokens, n_ctx) if n_ctx > 0 else 0
    if not messages:
        return PromptParts((), (), n_ctx, budget, ())

    def encode(chosen: Sequence[Message]) -> list[int]:
        return vocab.encode_prompt(chosen, chat, cancel=cancel)

    fit = fit_messages(messages, encode, budget, n_ctx) if n_ctx > 0 else None
    dropped = fit.dropped if fit is not None else ()
    kept_indices = [i for i in range(len(messages)) if i not in set(dropped or ())]
    kept = [messages[i] for i in kept_indices]
    tokens = fit.kept_tokens if fit is not None and fit.dropped is not None else None
    if tokens is None:
        tokens = tuple(encode(kept))
    parts = split_prompt(kept, tokens, visible_text(vocab))
    renumbered = tuple(
        PromptPart(p.kind, None if p.message is None else kept_indices[p.message], p.text, p.tokens)
        for p in parts
    )
    return PromptParts(renumbered, tuple(tokens), n_ctx, budget, dropped)
