"""Chat templates that raise, loop, recurse or blow up give one clear error, and Stop stops."""

from __future__ import annotations

import threading
import time

import pytest

from app.core.errors import ChatTemplateError, PromptCancelled
from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate
from app.core.inference.template_sandbox import RenderBudget

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ENDLESS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HI = [Message("user", "hi")]

BAD_TEMPLATES = {
    "division by zero": ("{{ 1/0 }}", "division by zero"),
    "recursive macro": (
        "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
        "recursed too deeply",
    ),
    "recursive loop": (
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
        "recursed too deeply",
    ),
    "exponential macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "ran for more than",
    ),
    "renders nothing": ("{% for m in messages %}{% endfor %}", "rendered nothing"),
    "renders whitespace": ("{% for m in messages %} {% endfor %}\n", "rendered nothing"),
    "lone surrogate": ("{{ '\\ud800' }}{{ messages[0].content }}", "lone surrogate"),
    "endless loop": (ENDLESS, "ran for more than"),
    "endless output": (ENDLESS.replace("{% endfor %}", "x{% endfor %}", 1), "ran for more than"),
    "huge repeat": ("{{ 'x' * 10**9 }}", "value of 1,000,000,000"),
    "doubling string": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
        "value of",
    ),
    "huge power": ("{% set n = 100000000 %}{{ 2 ** n }}", "power 100,000,000"),
    "huge width method": ("{{ 'x'.ljust(10**9) }}", "passed 1,000,000,000"),
    "huge width filter": ("{{ 'x'|center(10**9) }}", "passed 1,000,000,000"),
    "huge percent width": ("{{ '%999999999d' % 1 }}", "huge width"),
    "raise_exception": ("{{ raise_exception('Roles must alternate') }}", "Roles must alternate"),
    "sandbox escape": ("{{ messages.__class__.__mro__ }}", "unsafe"),
    "type error": ("{{ messages + 1 }}", "TypeError"),
}


@pytest.mark.parametrize("name", sorted(BAD_TEMPLATES))
def test_bad_template_gives_one_clear_error_with_the_fallback(name: str) -> None:
    source, problem = BAD_TEMPLATES[name]
    template = ChatTemplate(source, model="tiny.gguf", limits=RenderBudget(deadline_s=0.5))
    started = time.monotonic()
    with pytest.raises(ChatTemplateError) as caught:
        template.render(HI)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert problem in message
    assert "tiny.gguf" in message and "plain 'User:/Assistant:' transcript" in message
    assert "\n" not in message and caught.value.fallback_helps
    assert caught.value.model == "tiny.gguf"
    assert template.fallback().render(HI) == "User: hi\nAssistant:"


def test_lone_surrogate_in_a_message_names_the_message() -> None:
    template = ChatTemplate(CHATML, model="tiny.gguf")
    with pytest.raises(ChatTemplateError, match=r"Message 2 \(user\).*U\+DC80 at character 4"):
        template.render([Message("system", "s"), Message("user", "caf\udc80")])
    with pytest.raises(ChatTemplateError) as caught:
        template.fallback().render([Message("user", "caf\udc80")])
    assert not caught.value.fallback_helps


def test_output_budget() -> None:
    source = "{% for i in range(1000) %}{{ messages[0].content }}{% endfor %}"
    template = ChatTemplate(source, model="m", limits=RenderBudget(max_chars=10_000))
    assert len(template.render([Message("user", "x" * 10)])) == 10_000
    with pytest.raises(ChatTemplateError, match="more than 10,000 characters"):
        template.render([Message("user", "x" * 11)])


def test_step_budget() -> None:
    template = ChatTemplate(ENDLESS, model="m", limits=RenderBudget(max_steps=1000))
    with pytest.raises(ChatTemplateError, match="more than 1,000 steps"):
        template.render(HI)


def test_real_templates_render_long_chats_within_the_limits() -> None:
    chat = [Message("system", "Be brief.")]
    for i in range(2000):
        chat += [Message("user", f"question {i} " * 20), Message("assistant", f"answer {i}")]
    text = ChatTemplate(CHATML, model="m").render(chat)
    assert text.count("<|im_start|>") == len(chat) + 1
    assert (
        ChatTemplate(CHATML).render(HI) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_range_still_behaves_like_range() -> None:
    source = (
        "{{ range(3)|list }} {{ range(5)|length }} {{ range(4)[1] }} {{ range(3)|reverse|list }}"
    )
    assert ChatTemplate(source).render(HI) == "[0, 1, 2] 5 1 [2, 1, 0]"


def test_stop_ends_an_endless_template_within_100_ms() -> None:
    template = ChatTemplate(ENDLESS, model="m", limits=RenderBudget(deadline_s=60))
    cancel = threading.Event()
    outcome: list[BaseException] = []
    stopped_at: list[float] = []

    def render() -> None:
        try:
            template.render(HI, cancel=cancel)
        except BaseException as exc:
            stopped_at.append(time.monotonic())
            outcome.append(exc)

    worker = threading.Thread(target=render)
    worker.start()
    assert not cancel.wait(0.3)  # let it spin
    assert worker.is_alive()
    set_at = time.monotonic()
    cancel.set()
    worker.join(5)
    assert not worker.is_alive()
    assert isinstance(outcome[0], PromptCancelled)
    assert stopped_at[0] - set_at < 0.1
