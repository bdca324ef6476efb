"""The explorer panel and the context view with the real model's logits and tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.inference.engine import Engine
from app.core.inference.explorer import Exploration
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.next_logits import NextLogits
from app.core.inference.sampling import SamplingSettings
from app.core.inference.tokenizer import VocabTokenizer
from app.ui.sampling.context_view import ContextView
from app.ui.sampling.explorer_panel import DRAWS, ExplorerPanel

CHAT = (
    Message("system", "You are a poet."),
    Message("user", "Write one word about the sea."),
)


@pytest.fixture(scope="module")
def next_logits(starter_model: Path) -> Iterator[NextLogits]:
    engine = Engine()
    engine.load(starter_model, LoadOptions(n_ctx=1024, n_threads=1))
    try:
        yield engine.next_logits(CHAT)
    finally:
        engine.close()


def redraw(qtbot: QtBot, panel: ExplorerPanel, settings: SamplingSettings) -> Exploration:
    with qtbot.waitSignal(panel.redrawn, timeout=10_000) as blocker:
        panel.set_settings(settings)
    found = blocker.args[0] if blocker.args else None
    # a newer redraw may follow the one caught; wait until the last settings are drawn
    qtbot.waitUntil(lambda: panel.exploration is not None and not panel._running)
    assert isinstance(found, Exploration)
    assert panel.exploration is not None
    return panel.exploration


def test_moving_temperature_and_top_p_redraws_without_inference(
    qtbot: QtBot, next_logits: NextLogits
) -> None:
    panel = ExplorerPanel()
    qtbot.addWidget(panel)
    base = SamplingSettings(
        temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=5
    )
    with qtbot.waitSignal(panel.redrawn, timeout=10_000):
        panel.set_settings(base)
        panel.set_next_logits(next_logits)
    everything = panel.exploration
    assert everything is not None and everything.survivors == next_logits.logits.size
    top = everything.candidates[0]
    assert top.after == pytest.approx(top.before, abs=1e-5)  # temperature 1: the model alone

    cooler = redraw(qtbot, panel, base.with_changes(temperature=0.3))
    assert cooler.candidates[0].after > top.before
    assert cooler.entropy_after is not None and cooler.entropy_after < everything.entropy_before

    nucleus = redraw(qtbot, panel, base.with_changes(top_p=0.5))
    assert nucleus.survivors is not None and 1 <= nucleus.survivors < next_logits.logits.size
    assert nucleus.mass_kept is not None and nucleus.mass_kept >= 0.5 - 1e-5
    kept = [c for c in nucleus.candidates if c.cut_by is None]
    assert all(c.after > 0 for c in kept)
    assert all(c.after == 0 for c in nucleus.candidates if c.cut_by is not None)
    if nucleus.survivors < len(nucleus.candidates):
        assert {c.cut_by for c in nucleus.candidates} == {None, "top-p"}
        assert nucleus.mass_kept == pytest.approx(sum(c.before for c in kept), abs=1e-4)

    greedy = redraw(qtbot, panel, base.with_changes(temperature=0.0))
    assert greedy.survivors == 1 and greedy.pick == top.token_id
    summary = panel.findChild(type(panel._summary), "explorerSummary")
    assert summary is not None and "1 of" in summary.text()

    redraw(qtbot, panel, base.with_changes(temperature=1.2, top_p=0.9))
    draw = panel.findChild(type(panel._draw), "explorerDraw")
    assert draw is not None and draw.isEnabled()
    qtbot.mouseClick(draw, Qt.MouseButton.LeftButton)
    histogram = panel._histogram
    counts = [int(histogram.cell_text(r, 1)) for r in range(histogram.rowCount())]
    assert sum(counts) == DRAWS and histogram.isVisible() is panel.isVisible()

    costly = redraw(qtbot, panel, base.with_changes(typical_p=0.9))
    assert costly.survivors is not None
    if next_logits.logits.size >= 49_152:  # SmolLM2: typical-p with top-k 0 sorts every token
        assert "top-k" in panel._costs.text() and not panel._costs.isHidden()
    redraw(qtbot, panel, base.with_changes(top_k=40, typical_p=0.9))
    assert panel._costs.text() == "" and panel._costs.isHidden()
    panel.shutdown()


def test_the_context_view_parts_sum_to_the_prompt(qtbot: QtBot, starter_model: Path) -> None:
    tokenizer = VocabTokenizer(starter_model)
    try:
        chat = [*CHAT, Message("assistant", "Brine."), Message("user", "Another?")]
        parts = tokenizer.describe_prompt(chat, 128, 1024)
        expected = tokenizer.count_prompt(chat, 128, 1024).prompt_tokens
    finally:
        tokenizer.close()
    view = ContextView()
    qtbot.addWidget(view)
    view.set_parts(parts)
    rows = view.row_texts()
    assert rows[-1][0] == "Reply budget" and rows[-1][1] == "128"
    assert sum(int(n.replace(",", "")) for _, n in rows[:-1]) == expected == parts.total
    assert any(name.startswith("System prompt") for name, _ in rows)
    assert "<|im_start|>" in view._text.toPlainText()
    view.set_cached(parts.tokens[:10])
    assert "10 come from the KV cache" in view._summary.text()
