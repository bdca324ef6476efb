"""Chat templates and fitting a conversation into the context window."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.core.errors import ChatTemplateError, ContextOverflowError
from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate, OverflowPolicy, plan_prompt, reply_budget

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def words(text: str) -> list[int]:
    """A stand-in tokenizer for the budget arithmetic: one token per word."""
    return list(range(len(text.split())))


def chatml_words(messages: Sequence[Message]) -> list[int]:
    """Render with ChatML and count words."""
    return words(ChatTemplate(CHATML).render(messages))


def test_gguf_template_renders_with_generation_prompt() -> None:
    t = ChatTemplate(CHATML, bos_token="<s>", eos_token="</s>")
    text = t.render([Message("user", "hi")])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert not t.is_fallback and t.extra_stops == ()


def test_template_sees_bos_and_raise_exception() -> None:
    t = ChatTemplate(
        "{{ bos_token }}{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('Conversation must start with the user') }}{% endif %}ok"
    )
    t2 = ChatTemplate(t.source, bos_token="<s>")
    assert t2.render([Message("user", "x")]) == "<s>ok"
    with pytest.raises(ChatTemplateError, match="must start with the user"):
        t2.render([Message("assistant", "x")])


def test_template_is_sandboxed() -> None:
    t = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ChatTemplateError, match="unsafe"):
        t.render([Message("user", "x")])


def test_broken_template_is_a_clear_error() -> None:
    with pytest.raises(ChatTemplateError, match=r"chat template of .* is broken"):
        ChatTemplate("{% for m in messages %}")


def test_fallback_transcript_when_no_template() -> None:
    t = ChatTemplate(None)
    text = t.render([Message("system", "Be kind."), Message("user", "hi")])
    assert text == "System: Be kind.\nUser: hi\nAssistant:"
    assert t.is_fallback and t.extra_stops == ("\nUser:",)


def test_reply_budget() -> None:
    assert reply_budget(100, 4096) == 100
    assert reply_budget(10_000, 4096) == 2048
    assert reply_budget(None, 4096) == 1024


def conversation(turns: int) -> list[Message]:
    msgs = [Message("system", "sys prompt")]
    for i in range(turns):
        msgs += [Message("user", f"q{i} " * 10), Message("assistant", f"a{i} " * 10)]
    return [*msgs, Message("user", "last question")]


def test_fits_untouched() -> None:
    plan = plan_prompt(conversation(2), chatml_words, 200, 20, OverflowPolicy.STOP)
    assert plan.dropped == () and plan.kept == tuple(range(6))
    assert plan.reply_budget == 20


def test_stop_policy_raises_with_counts() -> None:
    with pytest.raises(ContextOverflowError) as err:
        plan_prompt(conversation(10), chatml_words, 100, 20, OverflowPolicy.STOP)
    assert err.value.limit == 100 and err.value.needed > 100


def test_drop_oldest_removes_whole_turns_and_keeps_system() -> None:
    msgs = conversation(10)
    plan = plan_prompt(msgs, chatml_words, 100, 20, OverflowPolicy.DROP_OLDEST)
    assert 0 in plan.kept and len(msgs) - 1 in plan.kept
    assert plan.dropped == tuple(range(1, 1 + len(plan.dropped)))
    assert len(plan.dropped) % 2 == 0
    assert len(plan.tokens) + 20 <= 100
    # Keeping one more turn would not have fitted.
    longer = [msgs[0], *msgs[plan.dropped[-1] - 1 :]]
    assert len(words(ChatTemplate(CHATML).render(longer))) + 20 > 100


def test_drop_oldest_gives_up_when_the_last_message_alone_is_too_big() -> None:
    msgs = [Message("system", "s"), Message("user", "word " * 500)]
    with pytest.raises(ContextOverflowError, match="last message alone"):
        plan_prompt(msgs, chatml_words, 100, 20, OverflowPolicy.DROP_OLDEST)
