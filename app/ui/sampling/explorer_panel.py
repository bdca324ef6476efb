"""The sampling explorer: what the current sampler chain does to the next token's odds.

The panel holds one row of logits (`set_row` / `set_next_logits`) and redraws whenever the
settings change (`set_settings`), with no new inference: the chain is re-applied to the
stored row (`ExplorerRow.explore`, llama.cpp's math) on a pool thread, newest settings
first, so dragging a slider never stalls the window. It shows the top candidates'
probabilities under the model alone and after the chain side by side, which sampler cut
each removed one, entropy before and after, survivors, the mass kept and the seed's pick.
"Draw 100" samples the distribution after the chain and shows the histogram.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.core.inference.next_logits import NextLogits
from app.core.inference.sampler_costs import cost_notes
from app.core.inference.sampling import SamplingSettings
from app.ui.sampling.probability_table import ProbabilityTable
from app.ui.widgets import named

if TYPE_CHECKING:  # numpy loads with the first row explored, after the window shows
    from app.core.inference.explorer import Exploration, ExplorerRow

log = logging.getLogger(__name__)

DRAWS = 100


def _pct(p: float) -> str:
    return f"{p * 100:.1f}%" if p >= 0.001 else f"{p * 100:.2g}%"


def _shown(text: str) -> str:
    """Token text with whitespace made visible."""
    if not text:
        return "(no text)"
    return repr(text)[1:-1] if text.strip() != text else text


class _Relay(QObject):
    done = Signal(int, object)


class _Job(QRunnable):
    def __init__(
        self, relay: _Relay, job_id: int, row: ExplorerRow, settings: SamplingSettings
    ) -> None:
        super().__init__()
        self._relay, self._id, self._row, self._settings = relay, job_id, row, settings

    def run(self) -> None:
        try:
            result: object = self._row.explore(self._settings)
        except Exception as exc:  # reported on the GUI thread
            log.exception("the explorer could not apply the sampler chain")
            result = exc
        self._relay.done.emit(self._id, result)


class ExplorerPanel(QWidget):
    """The live next-token distribution under the current sampler settings.

    Signals:
        exploreRequested(): The person asked to (re)compute the next token's logits
            ("Explore next token"); the window calls `InferenceThread.explore`.
        redrawn(object): An `Exploration` was drawn (after every settings change).
    """

    exploreRequested = Signal()
    redrawn = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "explorerPanel", "Sampling explorer")
        self._row: ExplorerRow | None = None
        self._settings = SamplingSettings()
        self._exploration: Exploration | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._job_id = 0
        self._running = False
        self._pending = False

        self._where = QLabel("No distribution yet: explore the next token.")
        named(self._where, "explorerPosition", "Position shown")
        self._where.setWordWrap(True)
        self._explore = QPushButton("&Explore next token")
        named(self._explore, "explorerExplore", "Explore the next token")
        self._explore.clicked.connect(self.exploreRequested)
        self._summary = QLabel("")
        named(self._summary, "explorerSummary", "Entropy, survivors and pick")
        self._summary.setWordWrap(True)
        self._note = QLabel("")
        named(self._note, "explorerNote", "Explorer note")
        self._note.setWordWrap(True)
        self._costs = QLabel("")
        named(self._costs, "explorerCosts", "Cost warnings")
        self._costs.setWordWrap(True)
        self._table = ProbabilityTable(["Token", "Model alone", "After samplers", "Cut by"])
        named(self._table, "explorerTable", "Candidates before and after the samplers")
        self._draw = QPushButton(f"&Draw {DRAWS}")
        named(self._draw, "explorerDraw", f"Draw {DRAWS} samples")
        self._draw.clicked.connect(self.draw_samples)
        self._histogram = ProbabilityTable(["Token", f"Drawn of {DRAWS}"])
        named(self._histogram, "explorerHistogram", f"Histogram of {DRAWS} draws")
        self._histogram.setVisible(False)

        top = QHBoxLayout()
        top.addWidget(self._where, 1)
        top.addWidget(self._explore)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self._summary)
        layout.addWidget(self._costs)
        layout.addWidget(self._table, 3)
        layout.addWidget(self._note)
        layout.addWidget(self._draw)
        layout.addWidget(self._histogram, 1)
        self._update_costs()

    # ----- inputs -----

    @property
    def exploration(self) -> Exploration | None:
        """The distribution drawn now."""
        return self._exploration

    def set_next_logits(self, result: NextLogits, where: str | None = None) -> None:
        """Show the distribution of `result` (from `InferenceWorker.explored`)."""
        from app.core.inference.explorer import ExplorerRow

        row = ExplorerRow(result.logits, result.tokens, n_ctx=result.n_ctx, texts=result.texts)
        if where is None:
            where = (
                f"Reply token {result.reply_tokens + 1}"
                if result.reply_tokens
                else "The next token after the conversation"
            )
            where += f" (position {result.position:,}; {result.cached:,} tokens from the cache)"
        self.set_row(row, where)

    def set_row(self, row: ExplorerRow | None, where: str = "") -> None:
        """Explore `row` (None: clear) and say which position it is."""
        self._row = row
        self._where.setText(where or ("" if row else "No distribution yet."))
        self._histogram.setVisible(False)
        if row is None:
            self._exploration = None
            self._table.set_rows([])
            self._summary.setText("")
            self._note.setText("")
        self._update_costs()
        self._schedule()

    def set_settings(self, settings: SamplingSettings) -> None:
        """Re-apply the chain for new settings (no inference); the same settings again
        change nothing (the chat's settings are re-sent on every draft change)."""
        if settings == self._settings:
            return
        self._settings = settings
        self._update_costs()
        self._schedule()

    def set_message(self, text: str) -> None:
        """Say something about the position (computing, failed, no model)."""
        self._where.setText(text)

    def shutdown(self) -> None:
        """Wait for a redraw still computing (call before the window closes)."""
        self._pool.waitForDone()

    # ----- computing -----

    def _schedule(self) -> None:
        if self._row is None:
            return
        if self._running:
            self._pending = True
            return
        self._running, self._pending = True, False
        self._job_id += 1
        self._pool.start(_Job(self._relay, self._job_id, self._row, self._settings))

    @Slot(int, object)
    def _on_done(self, job_id: int, result: object) -> None:
        self._running = False
        if isinstance(result, Exception):
            self._summary.setText(f"Could not apply the samplers: {result}")
        elif job_id == self._job_id:
            from app.core.inference.explorer import Exploration  # loaded by the job already

            if isinstance(result, Exploration):
                self._show(result)  # shown even if newer settings wait: the drag stays live
        if self._pending:
            self._schedule()

    def _show(self, found: Exploration) -> None:
        self._exploration = found
        rows: list[list[tuple[str, float | None, bool]]] = []
        top_before = max((c.before for c in found.candidates), default=1.0) or 1.0
        top_after = max((c.after for c in found.candidates), default=1.0) or 1.0
        scale = max(top_before, top_after)
        for c in found.candidates:
            mark = " ◀ pick" if c.token_id == found.pick else ""
            after = "—" if found.survivors is None else _pct(c.after)
            cut = c.cut_by or ""
            if c.penalized:
                cut = f"{cut} (penalized)".strip()
            rows.append(
                [
                    (_shown(c.text) + mark, None, False),
                    (_pct(c.before), c.before / scale, False),
                    (after, c.after / scale if found.survivors is not None else None, True),
                    (cut, None, False),
                ]
            )
        rest_after = "—" if found.rest_after is None else _pct(found.rest_after)
        rows.append(
            [
                ("(rest of the vocabulary)", None, False),
                (_pct(found.rest_before), None, False),
                (rest_after, None, False),
                ("", None, False),
            ]
        )
        self._table.set_rows(rows)
        self._summary.setText(self._describe(found))
        self._note.setText(found.note)
        self._draw.setEnabled(found.survivors is not None)
        self.redrawn.emit(found)

    def _describe(self, found: Exploration) -> str:
        if found.survivors is None or found.entropy_after is None or found.mass_kept is None:
            return f"Entropy {found.entropy_before:.2f} bits (the model alone)."
        pick = next((c for c in found.candidates if c.token_id == found.pick), None)
        pick_text = _shown(pick.text) if pick else f"#{found.pick}"
        rule = {
            "seed": f"the seed {self._settings.seed} picks",
            "greedy": "temperature 0 always picks",
            "likeliest": "likeliest survivor",
        }.get(found.pick_rule, "pick")
        return (
            f"Entropy {found.entropy_before:.2f} → {found.entropy_after:.2f} bits · "
            f"{found.survivors:,} of {found.n_vocab:,} tokens survive · "
            f"{_pct(found.mass_kept)} of the model's probability kept · {rule}: “{pick_text}”"
        )

    def _update_costs(self) -> None:
        n_vocab = self._row.n_vocab if self._row is not None else 0
        notes = cost_notes(self._settings, n_vocab) if n_vocab else ()
        self._costs.setText("\n".join(note.text for note in notes))
        self._costs.setVisible(bool(notes))

    # ----- sampling -----

    @Slot()
    def draw_samples(self) -> dict[int, int]:
        """Draw `DRAWS` tokens from the distribution after the chain; show and return
        the counts (token id -> times drawn)."""
        found, row = self._exploration, self._row
        if found is None or row is None or found.survivors is None:
            return {}
        counts = Counter(int(t) for t in found.sample(DRAWS))
        ranked = counts.most_common()
        self._histogram.set_rows(
            [
                [(_shown(row.text(token)), None, False), (str(n), n / DRAWS, True)]
                for token, n in ranked
            ]
        )
        self._histogram.setVisible(True)
        return dict(counts)
