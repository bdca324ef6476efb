"""Turn messages into the model's prompt and fit them into the context window.

The model's own GGUF chat template is rendered in a sandboxed Jinja environment with the
conventions of Hugging Face transformers. A model without a template (usually a base model)
gets a plain transcript format, and callers are told so.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from app.core.errors import (
    ChatTemplateError,
    ContextOverflowError,
    InvalidSettingError,
    PromptCancelled,
)
from app.core.inference.messages import Message

if TYPE_CHECKING:  # jinja2 loads with the first template: the GUI starts without it
    import jinja2
    import jinja2.ext

    from app.core.inference.template_sandbox import RenderBudget

# The tokens of the prompt for some messages (rendered and tokenized).
PromptEncoder = Callable[[Sequence[Message]], list[int]]

FALLBACK_NOTICE = (
    "This model has no chat template (it may be a base model); Hearth uses a plain "
    "'User:/Assistant:' transcript, and replies may be weaker than with a chat model."
)


class OverflowPolicy(str, Enum):
    """What to do when the conversation plus the reply budget exceeds the context."""

    STOP = "stop"
    DROP_OLDEST = "drop_oldest"


@functools.cache
def _ignore_generation_tag() -> type[jinja2.ext.Extension]:
    """A jinja2 extension: pass-through for transformers' `{% generation %}` template tag."""
    import jinja2.ext

    class IgnoreGenerationTag(jinja2.ext.Extension):
        tags = {"generation"}  # noqa: RUF012 - jinja2 API

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return IgnoreGenerationTag


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


FALLBACK_OFFER = (
    "Hearth can use a plain 'User:/Assistant:' transcript instead (replies may be weaker)."
)


class ChatTemplate:
    """A chat template that renders messages into prompt text.

    Rendering is bounded (`RenderBudget`: time, steps, output size) and stops when the
    caller's cancel event is set. Every failure is a `ChatTemplateError` naming the model.

    Args:
        source: Jinja template text from `tokenizer.chat_template`, or None for the fallback.
        bos_token: Text of the model's BOS token, passed to the template.
        eos_token: Text of the model's EOS token, passed to the template.
        model: The model's name, for messages.
        limits: The budget each render starts from (its cancel is replaced per render).
    """

    def __init__(
        self,
        source: str | None,
        bos_token: str = "",
        eos_token: str = "",
        *,
        model: str = "",
        limits: RenderBudget | None = None,
    ) -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model = model or "this model"
        from app.core.inference.template_sandbox import RenderBudget

        self.limits = limits or RenderBudget()
        self._template: jinja2.Template | None = None
        if source:
            import jinja2.ext

            from app.core.inference.template_sandbox import BoundedEnvironment

            env = BoundedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[_ignore_generation_tag(), jinja2.ext.loopcontrols],
            )
            env.filters["tojson"] = _tojson
            env.wrap_filters()
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            try:
                self._template = env.from_string(source)
            except (jinja2.TemplateError, RecursionError, MemoryError) as exc:
                raise ChatTemplateError(
                    f"The chat template of {self.model} is broken ({_describe(exc)}); Hearth "
                    f"cannot format a conversation with it. {FALLBACK_OFFER}",
                    model=self.model,
                ) from exc

    @property
    def is_fallback(self) -> bool:
        """True when the model has no usable template of its own."""
        return self._template is None

    @property
    def extra_stops(self) -> tuple[str, ...]:
        """Stop strings the format itself needs (the fallback's next-turn marker)."""
        return ("\nUser:",) if self.is_fallback else ()

    def fallback(self) -> ChatTemplate:
        """The plain transcript format for the same model (what to switch to on failure)."""
        return ChatTemplate(None, self.bos_token, self.eos_token, model=self.model)

    def render(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        *,
        cancel: threading.Event | None = None,
    ) -> str:
        """The prompt text for these messages, ending where the assistant's reply begins.

        Raises:
            ChatTemplateError: The template failed, ran past its limits, rendered nothing,
                or a message is not valid text.
            PromptCancelled: `cancel` was set while rendering.
        """
        self._check_text(messages)
        if self._template is None:
            return self._render_fallback(messages, add_generation_prompt)
        import jinja2

        from app.core.inference.template_sandbox import (
            RenderCancelled,
            RenderStopped,
            render_bounded,
        )

        budget = replace(self.limits, cancel=cancel)
        context = {
            "messages": [m.as_dict() for m in messages],
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "add_generation_prompt": add_generation_prompt,
        }
        try:
            text = render_bounded(self._template, context, budget)
        except RenderCancelled:
            raise PromptCancelled("Stopped while the prompt was being prepared.") from None
        except RenderStopped as exc:
            raise self._error(f"was stopped: {exc.reason}") from None
        except jinja2.TemplateError as exc:
            raise self._error(f"rejected this conversation: {_describe(exc)}") from exc
        except RecursionError:
            raise self._error("recursed too deeply (a macro that calls itself?)") from None
        except MemoryError:
            raise self._error("ran out of memory") from None
        except Exception as exc:  # a template is code: any Python error can come out of it
            raise self._error(f"failed: {_describe(exc)}") from exc
        if not text.strip():
            raise self._error("rendered nothing for this conversation")
        bad = _lone_surrogate(text)
        if bad is not None:
            raise self._error(f"wrote a lone surrogate (U+{ord(text[bad]):04X}), which is not text")
        return text

    def _error(self, problem: str) -> ChatTemplateError:
        return ChatTemplateError(
            f"The chat template of {self.model} {problem}. {FALLBACK_OFFER}", model=self.model
        )

    def _check_text(self, messages: Sequence[Message]) -> None:
        for i, message in enumerate(messages):
            bad = _lone_surrogate(message.content)
            if bad is not None:
                raise ChatTemplateError(
                    f"Message {i + 1} ({message.role}) for {self.model} holds a lone surrogate "
                    f"(U+{ord(message.content[bad]):04X} at character {bad + 1}), which is not "
                    "text and cannot be given to the model; edit or delete that message.",
                    model=self.model,
                    fallback_helps=False,
                )

    @staticmethod
    def _render_fallback(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        names = {"system": "System", "user": "User", "assistant": "Assistant"}
        text = "".join(f"{names[m.role]}: {m.content}\n" for m in messages)
        return text + ("Assistant:" if add_generation_prompt else "")


def _describe(exc: BaseException) -> str:
    said = str(exc).strip().splitlines()
    first = said[0] if said else ""
    name = type(exc).__name__
    return f"{first} ({name})" if first else name


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in `text`, or None."""
    found = _SURROGATE.search(text)
    return found.start() if found else None


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


@dataclass(frozen=True)
class PromptFit:
    """How messages fit the context: the tokens of all of them, and of those kept.

    `dropped` are the indices the drop-oldest policy leaves out (empty when everything
    fits), or None when even the system prompt and the last message alone do not fit.
    """

    all_tokens: tuple[int, ...]
    kept_tokens: tuple[int, ...]
    dropped: tuple[int, ...] | None


def fit_messages(
    messages: Sequence[Message],
    tokens_of: Callable[[Sequence[Message]], list[int]],
    budget: int,
    n_ctx: int,
) -> PromptFit:
    """The drop-oldest rule: drop the fewest oldest turns so that prompt + budget fits.

    The one implementation of the overflow rule (the engine's plan and the draft counter
    both use it). It finds the fewest turns with a binary search, so a long chat over the
    limit costs a few renders and tokenizations, not one per turn.
    """
    everything = tuple(tokens_of(messages))
    if len(everything) + budget <= n_ctx:
        return PromptFit(everything, everything, ())
    turns = droppable_turns(messages)
    low, high = 1, len(turns)  # the fewest turns to drop lies in [low, high], if any
    best: tuple[set[int], tuple[int, ...]] | None = None
    while low <= high:
        middle = (low + high) // 2
        dropped = set().union(*turns[:middle])
        tokens = tuple(tokens_of([m for i, m in enumerate(messages) if i not in dropped]))
        if len(tokens) + budget <= n_ctx:
            best, high = (dropped, tokens), middle - 1
        else:
            low = middle + 1
    if best is None:
        return PromptFit(everything, (), None)
    return PromptFit(everything, best[1], tuple(sorted(best[0])))


def droppable_turns(messages: Sequence[Message]) -> list[set[int]]:
    """The turns the drop-oldest policy removes, in the order it removes them.

    A turn is a user message and the replies after it; system messages and the last
    message are never dropped.
    """
    candidates = [i for i in range(len(messages) - 1) if messages[i].role != "system"]
    turns: list[set[int]] = []
    for i in candidates:
        if not turns or messages[i].role == "user":
            turns.append({i})
        else:
            turns[-1].add(i)
    return turns


def plan_prompt(
    messages: Sequence[Message],
    tokens_of: PromptEncoder,
    n_ctx: int,
    max_tokens: int | None,
    policy: OverflowPolicy,
) -> PromptPlan:
    """Render and tokenize (`tokens_of`), applying the overflow policy until prompt +
    budget fits.

    Raises:
        ContextOverflowError: The policy is STOP and it does not fit, or even the system
            prompt and the last message alone do not fit.
    """
    if not messages:
        raise InvalidSettingError("a conversation needs at least one message")
    budget = reply_budget(max_tokens, n_ctx)
    if policy is OverflowPolicy.STOP:
        tokens = tokens_of(messages)
        if len(tokens) + budget > n_ctx:
            raise ContextOverflowError(
                f"The conversation needs {len(tokens):,} tokens plus {budget:,} for the reply, "
                f"but the context holds {n_ctx:,}. Start a new chat, raise the context length, "
                "lower max tokens, or let Hearth drop the oldest turns.",
                needed=len(tokens) + budget,
                limit=n_ctx,
            )
        return PromptPlan(tuple(tokens), tuple(range(len(messages))), (), budget)
    fit = fit_messages(messages, tokens_of, budget, n_ctx)
    if fit.dropped is None:
        alone = [m for i, m in enumerate(messages) if m.role == "system" or i == len(messages) - 1]
        needed = len(tokens_of(alone))
        raise ContextOverflowError(
            f"The last message alone needs {needed:,} tokens plus {budget:,} for the "
            f"reply, more than the context's {n_ctx:,}. Shorten it or raise the context "
            "length.",
            needed=needed + budget,
            limit=n_ctx,
        )
    dropped = set(fit.dropped)
    kept = tuple(i for i in range(len(messages)) if i not in dropped)
    return PromptPlan(fit.kept_tokens, kept, fit.dropped, budget)
