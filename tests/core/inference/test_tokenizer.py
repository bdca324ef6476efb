"""The vocabulary-only tokenizer counts exactly as the loaded engine does (real SmolLM2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import ContextOverflowError, EngineStateError, ModelFileError
from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate, OverflowPolicy, droppable_turns, reply_budget
from app.core.inference.tokenizer import PromptCount, VocabTokenizer

N_CTX = 512
TEXTS = [
    "",
    "hello world",
    "  leading and   inner   spaces\n\n\ttabs and new lines\n",
    "héllo wörld — naïve café, 東京, Привет, emoji 🌍🚀",
    "<|im_start|>user\nspecial tokens in text<|im_end|>",
    "def f(x):\n    return x ** 2  # code\n",
    "a" * 3000,
]


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    made = Engine()
    made.load(starter_model, LoadOptions(n_ctx=N_CTX, n_threads=1), check_memory=False)
    yield made
    made.close()


@pytest.fixture(scope="module")
def tokenizer(starter_model: Path) -> Iterator[VocabTokenizer]:
    made = VocabTokenizer(starter_model)
    yield made
    made.close()


def chat(turns: int, words: int = 30, system: str = "Be brief.") -> list[Message]:
    messages = [Message("system", system)] if system else []
    for i in range(turns):
        messages.append(Message("user", f"question {i} " + "word " * words))
        messages.append(Message("assistant", f"answer {i} " + "reply " * words))
    messages.append(Message("user", "and the last question?"))
    return messages


@pytest.mark.parametrize("text", TEXTS)
def test_token_ids_equal_the_engines(engine: Engine, tokenizer: VocabTokenizer, text: str) -> None:
    assert tokenizer.tokenize(text) == engine.tokenize(text)
    assert tokenizer.count(text) == len(engine.tokenize(text))
    assert tokenizer.tokenize(text, parse_special=False) == engine.tokenize(
        text, parse_special=False
    )
    assert tokenizer.tokenize_prompt(text) == engine.tokenize_prompt(text)


def test_the_template_is_the_models(engine: Engine, tokenizer: VocabTokenizer) -> None:
    messages = chat(2)
    assert tokenizer.template.render(messages) == engine.template.render(messages)
    assert not tokenizer.template.is_fallback
    assert tokenizer.info.architecture == "llama"


@pytest.mark.parametrize(("turns", "max_tokens"), [(0, 64), (1, 64), (3, None), (2, 200)])
def test_prompt_counts_equal_the_engines_plan_when_it_fits(
    engine: Engine, tokenizer: VocabTokenizer, turns: int, max_tokens: int | None
) -> None:
    messages = chat(turns)
    count = tokenizer.count_prompt(messages, max_tokens, N_CTX)
    plan = engine.plan(messages, max_tokens, OverflowPolicy.STOP)
    assert count == PromptCount(len(plan.tokens), plan.reply_budget, N_CTX, ())
    assert count.fits and count.used == len(plan.tokens) + reply_budget(max_tokens, N_CTX)


@pytest.mark.parametrize(
    ("turns", "words", "system"), [(6, 30, "Be brief."), (20, 12, ""), (9, 25, "x")]
)
def test_dropped_turns_equal_the_engines_drop_oldest_plan(
    engine: Engine, tokenizer: VocabTokenizer, turns: int, words: int, system: str
) -> None:
    messages = chat(turns, words, system)
    count = tokenizer.count_prompt(messages, 128, N_CTX)
    plan = engine.plan(messages, 128, OverflowPolicy.DROP_OLDEST)
    assert not count.fits and count.dropped
    assert count.dropped == plan.dropped
    assert count.prompt_tokens == len(engine.tokenize_prompt(engine.template.render(messages)))


def test_a_last_message_too_long_to_fit_gives_none(
    engine: Engine, tokenizer: VocabTokenizer
) -> None:
    messages = [*chat(1), Message("user", "word " * 600)]
    with pytest.raises(ContextOverflowError):
        engine.plan(messages, 128, OverflowPolicy.DROP_OLDEST)
    count = tokenizer.count_prompt(messages, 128, N_CTX)
    assert count.dropped is None and not count.fits


def test_empty_conversations_and_other_templates(tokenizer: VocabTokenizer) -> None:
    assert tokenizer.count_prompt([], 64, N_CTX) == PromptCount(0, 64, N_CTX, ())
    plain = ChatTemplate(None)
    messages = [Message("user", "hi")]
    count = tokenizer.count_prompt(messages, 64, N_CTX, template=plain)
    assert count.prompt_tokens == len(tokenizer.tokenize_prompt("User: hi\nAssistant:"))


def test_droppable_turns_follow_the_overflow_policy() -> None:
    messages = [
        Message("system", "s"),
        Message("assistant", "greeting"),
        Message("user", "q1"),
        Message("assistant", "a1"),
        Message("system", "mid"),
        Message("assistant", "a1b"),
        Message("user", "q2"),
        Message("assistant", "a2"),
        Message("user", "last"),
    ]
    assert droppable_turns(messages) == [{1}, {2, 3, 5}, {6, 7}]
    assert droppable_turns([Message("user", "only")]) == []


def test_bad_files_and_closed_tokenizers_raise(tmp_path: Path, starter_model: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"hello, not a gguf at all" * 10)
    with pytest.raises(ModelFileError):
        VocabTokenizer(bogus)
    with pytest.raises(ModelFileError):
        VocabTokenizer(tmp_path / "missing.gguf")
    made = VocabTokenizer(starter_model)
    made.close()
    made.close()
    assert made.is_closed
    with pytest.raises(EngineStateError):
        made.tokenize("x")
