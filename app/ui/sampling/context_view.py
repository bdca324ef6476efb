"""What the model reads: the exact prompt after the chat template, part by part.

Shows the prompt's parts (system prompt, each message, template overhead) with their
token counts and share of the context window, the room kept for the reply, what the
drop-oldest overflow rule would leave out, how much of the prompt is in the KV cache now
(reused on Send) and how much will be read, and the KV cache's memory at this length
against what the context allocated. The prompt's text is shown with its special tokens.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.core.inference.load_options import LoadedModel
from app.core.inference.prompt_parts import TEMPLATE, PromptParts
from app.core.machine.memory import kv_cache_bytes
from app.core.units import format_bytes
from app.ui.sampling.probability_table import ProbabilityTable
from app.ui.widgets import named

_KINDS = {"system": "System prompt", "user": "User", "assistant": "Assistant"}


def cached_prefix(cached: tuple[int, ...], tokens: tuple[int, ...]) -> int:
    """How many of `tokens` the KV cache holds already (their common prefix)."""
    n = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        n += 1
    return n


class ContextView(QWidget):
    """The prompt as the model reads it; call `set_parts`, `set_cached`, `set_model`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "contextView", "What the model reads")
        self._parts: PromptParts | None = None
        self._cached: tuple[int, ...] = ()
        self._loaded: LoadedModel | None = None
        self._summary = QLabel("Nothing to show yet.")
        named(self._summary, "contextSummary", "Prompt size and window")
        self._summary.setWordWrap(True)
        self._table = ProbabilityTable(["Part", "Tokens", "Share of window", "In KV cache"])
        named(self._table, "contextParts", "Prompt parts with token counts")
        self._memory = QLabel("")
        named(self._memory, "contextMemory", "KV cache memory")
        self._memory.setWordWrap(True)
        self._text = QPlainTextEdit()
        self._text.setReadOnly(True)
        named(self._text, "contextPrompt", "The exact prompt with special tokens")
        layout = QVBoxLayout(self)
        layout.addWidget(self._summary)
        layout.addWidget(self._table, 2)
        layout.addWidget(self._memory)
        layout.addWidget(self._text, 3)

    @property
    def parts(self) -> PromptParts | None:
        """The prompt shown now."""
        return self._parts

    def set_parts(self, parts: PromptParts | None) -> None:
        """Show this prompt (from `TokenCounter.described`)."""
        self._parts = parts
        self._redraw()

    def set_cached(self, tokens: tuple[int, ...]) -> None:
        """The tokens in the KV cache now (from `InferenceWorker.cacheReported`)."""
        self._cached = tuple(tokens)
        self._redraw()

    def set_model(self, loaded: LoadedModel | None) -> None:
        """The loaded model (its KV cache types and context size, for the memory line)."""
        self._loaded = loaded
        self._redraw()

    def row_texts(self) -> list[tuple[str, str]]:
        """(part, tokens) of each table row, for tests and screen readers."""
        return [
            (self._table.cell_text(r, 0), self._table.cell_text(r, 1))
            for r in range(self._table.rowCount())
        ]

    def _redraw(self) -> None:
        parts = self._parts
        if parts is None:
            self._summary.setText("Nothing to show yet.")
            self._table.set_rows([])
            self._text.setPlainText("")
            self._memory.setText("")
            return
        reused = cached_prefix(self._cached, parts.tokens)
        reused = min(reused, max(0, parts.total - 1))  # the last token is always read
        rows: list[list[tuple[str, float | None, bool]]] = []
        start = 0
        for part in parts.parts:
            n = len(part.tokens)
            in_cache = max(0, min(n, reused - start))
            start += n
            name = "Template" if part.kind == TEMPLATE else _KINDS.get(part.kind, part.kind)
            if part.message is not None:
                name += f" (message {part.message + 1})"
            rows.append(
                [
                    (name, None, False),
                    (f"{n:,}", None, False),
                    (f"{parts.share(n) * 100:.1f}%", parts.share(n), part.kind != TEMPLATE),
                    (f"{in_cache:,} of {n:,}", in_cache / n if n else None, True),
                ]
            )
        rows.append(
            [
                ("Reply budget", None, False),
                (f"{parts.reply_budget:,}", None, False),
                (
                    f"{parts.share(parts.reply_budget) * 100:.1f}%",
                    parts.share(parts.reply_budget),
                    False,
                ),
                ("", None, False),
            ]
        )
        self._table.set_rows(rows)
        self._text.setPlainText("".join(p.text for p in parts.parts))
        self._summary.setText(self._describe(parts, reused))
        self._memory.setText(self._describe_memory(parts))

    @staticmethod
    def _describe(parts: PromptParts, reused: int) -> str:
        used = parts.total + parts.reply_budget
        text = (
            f"{parts.total:,} prompt tokens ({parts.template_tokens:,} of them template) + "
            f"{parts.reply_budget:,} kept for the reply = {used:,} of {parts.n_ctx:,} "
            f"({parts.share(used) * 100:.0f}% of the window). On Send, {reused:,} come "
            f"from the KV cache and {parts.total - reused:,} will be read."
        )
        if parts.dropped is None:
            text += " Even the system prompt and the last message alone do not fit."
        elif parts.dropped:
            listed = ", ".join(str(i + 1) for i in parts.dropped)
            text += f" To fit, the oldest turns are left out: messages {listed}."
        return text

    def _describe_memory(self, parts: PromptParts) -> str:
        loaded = self._loaded
        if loaded is None:
            return ""
        options = loaded.options
        type_k = options.type_k if options is not None else "f16"
        type_v = options.type_v if options is not None else "f16"
        try:
            now = kv_cache_bytes(loaded.info, max(1, parts.total), type_k, type_v)
            allocated = kv_cache_bytes(loaded.info, loaded.n_ctx, type_k, type_v)
        except Exception:  # an architecture whose sizes the GGUF header does not give
            return ""
        return (
            f"KV cache: about {format_bytes(now)} for this prompt, of "
            f"{format_bytes(allocated)} allocated for {loaded.n_ctx:,} tokens."
        )
