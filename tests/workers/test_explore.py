"""Exploring the next token on the inference thread, and describing the prompt on the
counter thread, with the real llama.cpp and SmolLM2-135M."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.next_logits import NextLogits
from app.core.inference.prompt_parts import PromptParts
from app.core.inference.sampling import SamplingSettings
from app.core.inference.tokenizer import VocabTokenizer
from app.workers.inference_thread import InferenceThread
from app.workers.token_counter import TokenCounter

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)
CHAT = (
    Message("system", "You are terse."),
    Message("user", "Name a colour."),
    Message("assistant", "Blue."),
    Message("user", "Another one?"),
)
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    made = Engine()
    made.load(starter_model, OPTIONS)
    yield made
    made.close()


def test_next_logits_reuse_the_cache_and_match_the_first_generated_token(engine: Engine) -> None:
    engine.clear_cache()
    first = engine.next_logits(CHAT)
    assert first.cached == 0 and first.prompt_tokens == len(first.tokens) > 10
    assert first.logits.dtype == np.float32 and first.logits.shape == (engine._n_vocab,)
    again = engine.next_logits(CHAT)
    assert again.cached == len(again.tokens)  # the same prompt: nothing read again
    np.testing.assert_array_equal(first.logits, again.logits)
    longer = engine.next_logits(CHAT, continue_with=engine.tokenize("Red"))
    assert longer.cached == first.prompt_tokens and longer.reply_tokens >= 1

    # A reply to this prompt starts from the very row the explorer was given (its saved
    # logits), so the explorer's pick is the reply's first token, greedy or seeded.
    from app.core.inference.events import GenerationDone
    from app.core.inference.explorer import ExplorerRow

    for settings in (
        SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=1),
        SamplingSettings(temperature=0.9, seed=1234, max_tokens=1),
        SamplingSettings(temperature=1.5, top_k=0, top_p=0.9, seed=99, max_tokens=1),
    ):
        now = engine.next_logits(CHAT)
        row = ExplorerRow(now.logits, now.tokens, n_ctx=now.n_ctx, texts=now.texts)
        pick = row.explore(settings).pick
        done = list(engine.generate(CHAT, settings))[-1]
        assert isinstance(done, GenerationDone) and pick is not None
        first_token = done.tokens[0] if done.tokens else None
        assert first_token == pick or (first_token is None and engine.token_text(pick) == "")


class Answers(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.explored: dict[int, NextLogits] = {}
        self.failed: dict[int, str] = {}
        self.cache: list[tuple[int, ...]] = []
        self.described: dict[int, PromptParts] = {}
        self.counted: list[int] = []

    @Slot(int, int, int, int, object)
    def on_counted(self, request_id: int, *_rest: object) -> None:
        self.counted.append(request_id)

    @Slot(int, object)
    def on_explored(self, request_id: int, result: object) -> None:
        assert isinstance(result, NextLogits)
        self.explored[request_id] = result

    @Slot(int, str)
    def on_failed(self, request_id: int, why: str) -> None:
        self.failed[request_id] = why

    @Slot(object)
    def on_cache(self, tokens: object) -> None:
        assert isinstance(tokens, tuple)
        self.cache.append(tokens)

    @Slot(int, object)
    def on_described(self, request_id: int, parts: object) -> None:
        assert isinstance(parts, PromptParts)
        self.described[request_id] = parts


def test_the_worker_explores_and_reports_its_cache(qtbot: QtBot, starter_model: Path) -> None:
    inference = InferenceThread()
    answers = Answers()
    inference.worker.explored.connect(answers.on_explored)
    inference.worker.exploreFailed.connect(answers.on_failed)
    inference.worker.cacheReported.connect(answers.on_cache)
    inference.start()
    try:
        inference.explore(1, CHAT)
        qtbot.waitUntil(lambda: 1 in answers.failed, timeout=TIMEOUT_MS)
        assert "No model is loaded" in answers.failed[1]
        with qtbot.waitSignal(inference.worker.loaded, timeout=TIMEOUT_MS):
            inference.load(starter_model, OPTIONS)
        inference.explore(2, CHAT)
        qtbot.waitUntil(lambda: 2 in answers.explored, timeout=TIMEOUT_MS)
        inference.report_cache()
        qtbot.waitUntil(lambda: bool(answers.cache), timeout=TIMEOUT_MS)
        assert answers.cache[-1] == answers.explored[2].tokens
        inference.cancel(3)
        inference.explore(3, (*CHAT, Message("user", "and a third " * 40)))
        qtbot.waitUntil(lambda: 3 in answers.failed, timeout=TIMEOUT_MS)
    finally:
        assert inference.stop()


def test_the_counter_describes_the_prompt_in_parts(qtbot: QtBot, starter_model: Path) -> None:
    counter = TokenCounter()
    answers = Answers()
    counter.described.connect(answers.on_described)
    counter.describeFailed.connect(answers.on_failed)
    counter.counted.connect(answers.on_counted)
    counter.start()
    try:
        counter.describe(0, CHAT, 64, 1024)
        qtbot.waitUntil(lambda: 0 in answers.failed, timeout=TIMEOUT_MS)
        assert "No model vocabulary" in answers.failed[0]
        with qtbot.waitSignal(counter.modelReady, timeout=TIMEOUT_MS):
            counter.set_model(str(starter_model))
        counter.count(1, "draft", CHAT, 64, 1024)  # counting and describing do not
        counter.describe(1, CHAT, 64, 1024)  # overtake each other
        qtbot.waitUntil(
            lambda: 1 in answers.described and answers.counted == [1], timeout=TIMEOUT_MS
        )
    finally:
        assert counter.stop()
    parts = answers.described[1]
    reference = VocabTokenizer(starter_model)
    try:
        assert parts.total == reference.count_prompt(list(CHAT), 64, 1024).prompt_tokens
    finally:
        reference.close()
    assert sum(len(p.tokens) for p in parts.parts) == parts.total
    for index, message in enumerate(CHAT):
        assert parts.message_tokens(index) > 0
        assert message.content in "".join(p.text for p in parts.parts if p.message == index)
    assert "<|im_start|>" in "".join(p.text for p in parts.parts if p.kind == "template")
    assert parts.template_tokens > 0 and parts.reply_budget == 64
