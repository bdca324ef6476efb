"""A Jinja sandbox for chat templates that cannot run away: bounded, stoppable rendering.

Jinja runs as plain Python, so a template cannot be killed from outside; instead every
step it takes passes a `RenderBudget` check: each call, attribute or item lookup, filter,
arithmetic operator, `range` step and output chunk. The check stops the render when it
runs past its deadline, its step budget or its output budget, or when the caller's cancel
event is set, so Stop ends a rendering template within a few milliseconds. Operators and
calls that could build a huge value in one step (`'x' * 10**9`, `2 ** 10**9`,
`'x'.ljust(10**9)`) are refused before they run.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

# The largest integer a template may pass to a call or filter (a width, a count).
MAX_INT_ARGUMENT = 1_000_000
# The largest exponent a template may use with `**`.
MAX_EXPONENT = 4096
_HUGE_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d{7,}|\*)")


class RenderStopped(Exception):
    """A render went past its budget; `reason` says which, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RenderCancelled(Exception):
    """The caller's cancel event was set while rendering."""


@dataclass
class RenderBudget:
    """Limits for one render.

    Args:
        deadline_s: Wall-clock seconds the render may take.
        max_steps: Template operations (calls, lookups, loop steps, output chunks).
        max_chars: Characters of output.
        cancel: Set from another thread to stop the render.
    """

    deadline_s: float = 5.0
    max_steps: int = 20_000_000
    max_chars: int = 8_000_000
    cancel: threading.Event | None = None
    steps: int = 0
    chars: int = 0
    _deadline: float = field(default=0.0, repr=False)

    def start(self) -> None:
        """Start the clock."""
        self.steps = 0
        self.chars = 0
        self._deadline = time.monotonic() + self.deadline_s

    def step(self) -> None:
        """Count one operation; raise if any limit is passed or the render was cancelled.

        The clock and the cancel event are read every 32 steps (a few microseconds apart).
        """
        self.steps += 1
        if self.steps & 31:
            return
        if self.cancel is not None and self.cancel.is_set():
            raise RenderCancelled()
        if self.steps > self.max_steps:
            raise RenderStopped(f"it took more than {self.max_steps:,} steps (a runaway loop?)")
        if time.monotonic() > self._deadline:
            raise RenderStopped(
                f"it ran for more than {self.deadline_s:g} s (an endless loop or recursion?)"
            )

    def output(self, chunk: str) -> None:
        """Count output characters."""
        self.chars += len(chunk)
        if self.chars > self.max_chars:
            raise RenderStopped(f"it wrote more than {self.max_chars:,} characters")
        self.step()

    def check_size(self, n: int) -> None:
        """Refuse to build a value of `n` characters or items."""
        if n > self.max_chars:
            raise RenderStopped(f"it tried to build a value of {n:,} characters or items")


_current: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "hearth_render_budget", default=None
)


def _budget() -> RenderBudget:
    budget = _current.get()
    if budget is None:  # rendering outside `render_bounded` (should not happen): no limits
        budget = RenderBudget(deadline_s=math.inf, max_steps=2**62, max_chars=2**62)
        budget.start()
        _current.set(budget)
    return budget


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARGUMENT:
            raise RenderStopped(f"it passed {value:,} to a function (at most {MAX_INT_ARGUMENT:,})")


_SIZED = (str, list, tuple, bytes)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, _SIZED) else None


class _BoundedRange:
    """`range` whose every step is counted (a `range` in all else)."""

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)

    def __iter__(self) -> Iterator[int]:
        budget = _budget()
        for i in self._range:
            budget.step()
            yield i

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __reversed__(self) -> Iterator[int]:
        budget = _budget()
        for i in reversed(self._range):
            budget.step()
            yield i


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Hugging Face's immutable sandbox with every operation counted against a budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _BoundedRange

    def wrap_filters(self) -> None:
        """Count every filter call (call after all filters are registered)."""
        for name, func in list(self.filters.items()):
            self.filters[name] = _counted(func)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from the template: counted, with integer arguments bounded."""
        _budget().step()
        _check_arguments(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.attribute` from the template, counted."""
        _budget().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """`obj[argument]` from the template, counted."""
        _budget().step()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Arithmetic from the template, refusing results too large to build."""
        budget = _budget()
        budget.step()
        if operator == "+" and type(left) is str and type(right) is str:  # the common case
            budget.check_size(len(left) + len(right))
            return left + right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                n = _length(seq)
                if n is not None and isinstance(times, int):
                    budget.check_size(n * max(times, 0))
        elif operator == "**":
            if isinstance(right, int) and isinstance(left, int) and abs(right) > MAX_EXPONENT:
                raise RenderStopped(f"it raised a number to the power {right:,}")
        elif operator == "+":
            a, b = _length(left), _length(right)
            if a is not None and b is not None:
                budget.check_size(a + b)
        elif operator == "%" and isinstance(left, str) and _HUGE_PERCENT_WIDTH.search(left):
            raise RenderStopped("it formatted text with a huge width")
        return super().call_binop(context, operator, left, right)


def _counted(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def counted(*args: Any, **kwargs: Any) -> Any:
        _budget().step()
        _check_arguments(args[1:], kwargs)  # the first is the value being filtered
        return func(*args, **kwargs)

    return counted


def render_bounded(template: Any, context: dict[str, Any], budget: RenderBudget) -> str:
    """Render `template` with `context`, stopping at the budget's limits.

    Raises:
        RenderStopped: A limit was reached.
        RenderCancelled: The budget's cancel event was set.
        Exception: Whatever the template itself raised.
    """
    budget.start()
    token = _current.set(budget)
    try:
        parts: list[str] = []
        for chunk in template.generate(**context):
            budget.output(chunk)
            parts.append(chunk)
        return "".join(parts)
    finally:
        _current.reset(token)
