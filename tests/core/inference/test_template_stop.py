"""Stop reaches a chat template that is still rendering: the engine ends the reply as
cancelled within 100 ms (a real tiny model whose template never ends)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.core.errors import ChatTemplateError
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, StopReason
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from tests.gguf_factory import write_tiny_gguf

ENDLESS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_stop_ends_a_rendering_template_within_100_ms(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "endless.gguf", chat_template=ENDLESS)
    engine = Engine()
    engine.load(model, LoadOptions(n_ctx=256, n_threads=1), check_memory=False)
    try:
        cancel = threading.Event()
        result: list[object] = []
        returned_at: list[float] = []

        def reply() -> None:
            events = list(engine.generate([Message("user", "hi")], cancel=cancel))
            returned_at.append(time.monotonic())
            result.extend(events)

        worker = threading.Thread(target=reply)
        worker.start()
        assert not cancel.wait(0.3)
        assert worker.is_alive()  # still rendering
        set_at = time.monotonic()
        cancel.set()
        worker.join(5)
        assert not worker.is_alive()
        assert returned_at[0] - set_at < 0.1
        [done] = result
        assert isinstance(done, GenerationDone)
        assert done.stats.stop_reason is StopReason.CANCELLED and done.text == ""
    finally:
        engine.close()


def test_a_failing_template_names_the_model_and_the_fallback_works(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "broken-template.gguf", chat_template="{{ 1/0 }}")
    engine = Engine()
    engine.load(model, LoadOptions(n_ctx=256, n_threads=1), check_memory=False)
    try:
        with pytest.raises(ChatTemplateError, match=r"broken-template\.gguf failed: division"):
            engine.generate([Message("user", "hi")])
        engine.template = engine.template.fallback()
        plan = engine.plan([Message("user", "hi")], 8)
        assert plan.tokens
    finally:
        engine.close()
