"""The Discover tab's detail pane: what the selected model is, whether it fits this
machine, and its model card (fetched only when the model is selected), as Markdown.

The pane only shows what it is given; the Discover tab decides when to fetch the card and
the fit verdict (on background jobs) and hands the results here.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QTextBrowser, QWidget

from app.core.models.catalog import THINKING_TEXT, CatalogEntry
from app.core.models.hub import HubModel, memory_for_file
from app.core.units import format_bytes, format_params
from app.ui.models.library_tab import FIT_TIPS, bits_per_weight
from app.ui.widgets import named

UNVERIFIED_NOTE = (
    "**Unverified:** the file name or size of this entry could not be confirmed from "
    "published copies of the Hub's listing. The Hub's own listing decides when you download."
)
_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>#|"})


def md_escape(text: str) -> str:
    """Text shown literally inside Markdown."""
    return text.translate(_MD_SPECIAL)


@dataclass(frozen=True)
class FitFacts:
    """The memory math of one file on this machine.

    Attributes:
        label: Which file ("Q4_K_M").
        size_bytes: The file's size.
        parameters: The model's parameter count (0 if unknown).
        badge: "fits", "tight", "too_big" or "unknown" for this machine.
    """

    label: str
    size_bytes: int
    parameters: int
    badge: str


def memory_markdown(fit: FitFacts) -> str:
    """The "Memory math" paragraph, in the words "My models" uses."""
    lines = []
    bits = bits_per_weight(fit.size_bytes, fit.parameters)
    if bits is not None:
        lines.append(
            f"**Memory math ({md_escape(fit.label)}):** {fit.parameters:,} parameters \u00d7 "
            f"{bits:.2f} bits per weight ≈ {format_bytes(fit.size_bytes)} of weights."
        )
    else:
        lines.append(
            f"**Memory math ({md_escape(fit.label)}):** {format_bytes(fit.size_bytes)} of weights."
        )
    lines.append(
        f"To run: about {format_bytes(memory_for_file(fit.size_bytes))} (weights + KV cache + "
        f"buffers at a modest context). {FIT_TIPS.get(fit.badge, '')}"
    )
    return "\n\n".join(lines)


def entry_markdown(entry: CatalogEntry) -> str:
    """The facts of a catalog entry, before its card."""
    parts = [f"## {md_escape(entry.name)}", md_escape(entry.notes)]
    if not entry.verified:
        parts.append(UNVERIFIED_NOTE)
    facts = [
        f"**Licence:** {md_escape(entry.licence)}",
        f"**Parameters:** {format_params(entry.parameters)} · **Context:** "
        f"{entry.context_length:,} tokens · **Architecture:** {md_escape(entry.architecture)}",
        f"**Thinking:** {THINKING_TEXT[entry.thinking]}",
        f"**File:** {md_escape(entry.file)} ({entry.quant}, {entry.size_bytes:,} bytes)",
    ]
    if entry.repo_id:
        facts.append(f"**Repo:** {md_escape(entry.repo_id)}")
    if entry.sha256:
        facts.append(f"**SHA-256:** {entry.sha256}")
    if entry.chat_template is not None:
        facts.append(f"**Chat template:** {'yes' if entry.chat_template else 'none'}")
    parts.append("  \n".join(facts))
    return "\n\n".join(parts)


def sources_markdown(entry: CatalogEntry) -> str:
    """Where each fact of a catalog entry came from, and when it was checked."""
    if not entry.sources:
        return ""
    checked = f" (checked {entry.checked})" if entry.checked else ""
    listed = "\n".join(f"- {md_escape(s.fact)}: {md_escape(s.where)}" for s in entry.sources)
    return f"**Sources of these facts{checked}:**\n\n{listed}"


def hub_model_markdown(model: HubModel) -> str:
    """The facts of a Hub search result, before its card."""
    facts = [
        f"**Licence:** {md_escape(model.licence or 'not stated')}",
        f"**Parameters:** {format_params(model.n_params) or 'unknown'} · **Architecture:** "
        f"{md_escape(model.architecture or 'unknown')}",
        f"**Downloads (last month):** {model.downloads:,} · **Likes:** {model.likes:,}",
    ]
    if model.gated:
        facts.append("**Gated:** accept the licence on the Hub and add a token to download.")
    return f"## {md_escape(model.repo_id)}\n\n" + "  \n".join(facts)


class ModelDetails(QTextBrowser):
    """Markdown facts, memory math and card of the selected model.

    Object name: hubDetails.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "hubDetails", "Details of the selected model")
        self.setOpenExternalLinks(True)
        self._facts = ""
        self._fit: FitFacts | None = None
        self._card = ""
        self._footer = ""
        self._render()

    def show_entry(self, entry: CatalogEntry) -> None:
        """Show a catalog entry (its card and fit arrive later; its sources go last)."""
        self._show(entry_markdown(entry), sources_markdown(entry))

    def show_hub_model(self, model: HubModel) -> None:
        """Show a Hub search result (its card and fit arrive later)."""
        self._show(hub_model_markdown(model))

    def set_fit(self, fit: FitFacts | None) -> None:
        """Show the memory math of the chosen file on this machine."""
        self._fit = fit
        self._render()

    def set_card(self, text: str) -> None:
        """Show the model card (Markdown) or a line about it."""
        self._card = text
        self._render()

    @property
    def card(self) -> str:
        """The card text on show."""
        return self._card

    @property
    def fit(self) -> FitFacts | None:
        """The memory math on show."""
        return self._fit

    def _show(self, facts: str, footer: str = "") -> None:
        self._facts = facts
        self._footer = footer
        self._fit = None
        self._card = ""
        self._render()

    def _render(self) -> None:
        if not self._facts:
            self.setMarkdown("Pick a model to read about it.")
            return
        parts = [self._facts]
        if self._fit is not None:
            parts.append(memory_markdown(self._fit))
        if self._card:
            parts.append("---")
            parts.append(self._card)
        if self._footer:
            parts.append("---")
            parts.append(self._footer)
        self.setMarkdown("\n\n".join(parts))
