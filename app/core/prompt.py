"""Turn messages into the model's prompt and fit them into the context window.

The model's own GGUF chat template is rendered in a sandboxed Jinja environment with the
conventions of Hugging Face transformers. A model without a template (usually a base model)
gets a plain transcript format, and callers are told so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.chat import Message
from app.core.errors import ChatTemplateError, ContextOverflowError, InvalidSettingError

Tokenizer = Callable[[str], list[int]]

FALLBACK_NOTICE = (
    "This model has no chat template (it may be a base model); Hearth uses a plain "
    "'User:/Assistant:' transcript, and replies may be weaker than with a chat model."
)


class OverflowPolicy(str, Enum):
    """What to do when the conversation plus the reply budget exceeds the context."""

    STOP = "stop"
    DROP_OLDEST = "drop_oldest"


class _IgnoreGenerationTag(jinja2.ext.Extension):
    """Pass-through for transformers' `{% generation %}` template tag."""

    tags = {"generation"}  # noqa: RUF012 - jinja2 API

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


class ChatTemplate:
    """A chat template that renders messages into prompt text.

    Args:
        source: Jinja template text from `tokenizer.chat_template`, or None for the fallback.
        bos_token: Text of the model's BOS token, passed to the template.
        eos_token: Text of the model's EOS token, passed to the template.
    """

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template: jinja2.Template | None = None
        if source:
            env = ImmutableSandboxedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[_IgnoreGenerationTag, jinja2.ext.loopcontrols],
            )
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            try:
                self._template = env.from_string(source)
            except jinja2.TemplateError as exc:
                raise ChatTemplateError(
                    f"The model's chat template is broken ({exc}); Hearth cannot format "
                    "a conversation for it. Pick another build of this model."
                ) from exc

    @property
    def is_fallback(self) -> bool:
        """True when the model has no usable template of its own."""
        return self._template is None

    @property
    def extra_stops(self) -> tuple[str, ...]:
        """Stop strings the format itself needs (the fallback's next-turn marker)."""
        return ("\nUser:",) if self.is_fallback else ()

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text for these messages, ending where the assistant's reply begins."""
        if self._template is None:
            return self._render_fallback(messages, add_generation_prompt)
        try:
            return self._template.render(
                messages=[m.as_dict() for m in messages],
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=add_generation_prompt,
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(
                f"The model's chat template rejected this conversation: {exc}"
            ) from exc

    @staticmethod
    def _render_fallback(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        names = {"system": "System", "user": "User", "assistant": "Assistant"}
        text = "".join(f"{names[m.role]}: {m.content}\n" for m in messages)
        return text + ("Assistant:" if add_generation_prompt else "")


@dataclass(frozen=True)
class PromptPlan:
    """The tokens to feed and which messages made it in."""

    tokens: tuple[int, ...]
    kept: tuple[int, ...]
    dropped: tuple[int, ...]
    reply_budget: int


def reply_budget(max_tokens: int | None, n_ctx: int) -> int:
    """Tokens kept free for the reply: `max_tokens`, at most half the context.

    With no limit, a quarter of the context is kept free; the reply may still run on
    until the context is full (and then stops with `context_full`).
    """
    wanted = max_tokens if max_tokens is not None else n_ctx // 4
    return max(1, min(wanted, n_ctx // 2))


def plan_prompt(
    messages: Sequence[Message],
    template: ChatTemplate,
    tokenize: Tokenizer,
    n_ctx: int,
    max_tokens: int | None,
    policy: OverflowPolicy,
) -> PromptPlan:
    """Render and tokenize, applying the overflow policy until prompt + budget fits.

    Raises:
        ContextOverflowError: The policy is STOP and it does not fit, or even the system
            prompt and the last message alone do not fit.
    """
    if not messages:
        raise InvalidSettingError("a conversation needs at least one message")
    budget = reply_budget(max_tokens, n_ctx)
    kept = list(range(len(messages)))
    while True:
        tokens = tokenize(template.render([messages[i] for i in kept]))
        needed = len(tokens) + budget
        if needed <= n_ctx:
            kept_set = set(kept)
            dropped = tuple(i for i in range(len(messages)) if i not in kept_set)
            return PromptPlan(tuple(tokens), tuple(kept), dropped, budget)
        if policy is OverflowPolicy.STOP:
            raise ContextOverflowError(
                f"The conversation needs {len(tokens):,} tokens plus {budget:,} for the reply, "
                f"but the context holds {n_ctx:,}. Start a new chat, raise the context length, "
                "lower max tokens, or let Hearth drop the oldest turns.",
                needed=needed,
                limit=n_ctx,
            )
        droppable = _oldest_turn(messages, kept)
        if not droppable:
            raise ContextOverflowError(
                f"The last message alone needs {len(tokens):,} tokens plus {budget:,} for the "
                f"reply, more than the context's {n_ctx:,}. Shorten it or raise the context "
                "length.",
                needed=needed,
                limit=n_ctx,
            )
        kept = [i for i in kept if i not in droppable]


def _oldest_turn(messages: Sequence[Message], kept: list[int]) -> set[int]:
    """Indices of the oldest droppable turn: a user message and the replies after it.

    System messages and the final message are never dropped.
    """
    candidates = [i for i in kept[:-1] if messages[i].role != "system"]
    if not candidates:
        return set()
    turn = {candidates[0]}
    for i in candidates[1:]:
        if messages[i].role == "user":
            break
        turn.add(i)
    return turn
