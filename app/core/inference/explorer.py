"""The sampling explorer's numbers: one logits row, re-run through the chain per setting.

An `ExplorerRow` holds one full row of logits (the next token after a prompt) and what
does not depend on the settings (the model's own distribution at temperature 1, its
entropy, the best candidates). `ExplorerRow.explore(settings)` re-applies llama.cpp's
chain exactly (`chain_math`) and says, for the top candidates, how likely each is before
and after, which sampler removed it, and what the seed would pick.

Mirostat is explained, not simulated: its choice depends on a running estimate (mu) that
changes with every token of the reply, which the explorer does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.inference.chain_math import (
    GREEDY,
    STAGES,
    ChainOutcome,
    run_chain,
    seeded_pick,
)
from app.core.inference.sampling import SamplingSettings

TOP_CANDIDATES = 30
"""How many candidates the explorer lists (plus the rest of the vocabulary)."""

MIROSTAT_NOTE = (
    "Mirostat picks each token by aiming at a target surprise (tau): it keeps a running "
    "estimate (mu) that it corrects after every token by eta, and cuts the candidates "
    "whose surprise is above it. That estimate depends on the tokens already written, so "
    "the explorer shows the model's own distribution and does not simulate mirostat."
)
RANDOM_SEED_NOTE = (
    "The seed is random: each reply draws its own, so no single pick can be shown; the "
    "likeliest survivor is marked instead."
)


@dataclass(frozen=True)
class Candidate:
    """One candidate token: its probability under the model alone and after the chain.

    `cut_by` names the sampler that removed it (None if it survived); `penalized` is True
    when a repetition penalty changed its logit.
    """

    token_id: int
    text: str
    logit: float
    before: float
    after: float
    cut_by: str | None
    penalized: bool


@dataclass(frozen=True)
class Exploration:
    """The chain applied to one row, as the explorer draws it.

    `after`-side fields are None under mirostat. `pick` is the token the seed would pick
    (`pick_rule` "seed"), the single greedy survivor ("greedy"), or the likeliest
    survivor when the seed is random ("likeliest"). `survivor_ids` / `survivor_probs`
    are every survivor (for drawing samples), in llama.cpp's order.
    """

    candidates: tuple[Candidate, ...]
    rest_before: float
    rest_after: float | None
    entropy_before: float
    entropy_after: float | None
    survivors: int | None
    mass_kept: float | None
    pick: int | None
    pick_rule: str
    removed: Mapping[str, int]
    note: str
    survivor_ids: npt.NDArray[np.int64]
    survivor_probs: npt.NDArray[np.float32]
    n_vocab: int

    def sample(self, n: int, seed: int | None = None) -> npt.NDArray[np.int64]:
        """Draw `n` tokens from the distribution after the chain (numpy's generator)."""
        if self.survivor_ids.size == 0:
            return np.empty(0, dtype=np.int64)
        probs = self.survivor_probs.astype(np.float64)
        drawn = np.random.default_rng(seed).choice(self.survivor_ids, n, p=probs / probs.sum())
        return np.asarray(drawn, dtype=np.int64)


def entropy_bits(probs: npt.NDArray[np.floating]) -> float:
    """Shannon entropy in bits of a probability vector (zeros ignored)."""
    p = probs[probs > 0].astype(np.float64)
    return float(-(p * np.log2(p)).sum())


class ExplorerRow:
    """One row of logits, ready to be re-explored under many settings.

    Args:
        logits: The whole vocabulary's logits (copied as float32).
        history: The tokens before this position (prompt, then reply so far), for the
            penalties.
        n_ctx: The context size (the penalty window for repeat_last_n = -1).
        texts: Token id -> readable text, for the ids worth naming (others show as #id).
        top: How many candidates to list.
    """

    def __init__(
        self,
        logits: npt.ArrayLike,
        history: Sequence[int] = (),
        *,
        n_ctx: int = 0,
        texts: Mapping[int, str] | None = None,
        top: int = TOP_CANDIDATES,
    ) -> None:
        self.logits = np.array(logits, dtype=np.float32, copy=True).reshape(-1)
        if self.logits.size == 0:
            raise ValueError("an explorer row needs at least one logit")
        self.history = tuple(int(t) for t in history)
        self.n_ctx = n_ctx
        self.texts = dict(texts or {})
        self.top = max(1, min(top, self.logits.size))
        shifted = np.exp(self.logits.astype(np.float64) - float(self.logits.max()))
        self.before = shifted / shifted.sum()
        self.entropy_before = entropy_bits(self.before)
        n = self.logits.size
        k = min(n, self.top)
        best = np.argpartition(-self.logits, k - 1)[:k] if k < n else np.arange(n)
        self.top_ids = best[np.lexsort((best, -self.logits[best]))].astype(np.int64)

    @property
    def n_vocab(self) -> int:
        """The vocabulary's size (the row's length)."""
        return int(self.logits.size)

    def text(self, token_id: int) -> str:
        """The token's text, or #id when it was not given."""
        return self.texts.get(token_id, f"#{token_id}")

    def explore(self, settings: SamplingSettings, draws_before: int = 0) -> Exploration:
        """Apply `settings`' chain to the row.

        `draws_before` is how many tokens the reply's chain sampled before this one (0 for
        the first token of a reply or a branch): the dist sampler's random stream has
        advanced by one draw per token.
        """
        if settings.mirostat:
            return self._mirostat()
        outcome = run_chain(
            self.logits, settings, self.history, n_ctx=self.n_ctx, watch=self.top_ids
        )
        rows = self._rows(outcome)
        after = np.zeros(self.n_vocab, dtype=np.float32)
        after[outcome.ids] = outcome.probs
        everyone = outcome.ids.size == self.n_vocab
        cut = self._cuts(outcome, rows)
        penalized = set(outcome.penalized.tolist())
        candidates = tuple(
            Candidate(
                token_id=int(t),
                text=self.text(int(t)),
                logit=float(self.logits[t]),
                before=float(self.before[t]),
                after=float(after[t]),
                cut_by=cut.get(int(t)),
                penalized=int(t) in penalized,
            )
            for t in rows
        )
        if outcome.greedy:
            pick, rule, note = int(outcome.ids[0]), "greedy", ""
        elif settings.seed is None:
            best = int(np.argmax(outcome.probs))
            pick, rule, note = int(outcome.ids[best]), "likeliest", RANDOM_SEED_NOTE
        else:
            pick, rule, note = seeded_pick(outcome, settings.seed, draws_before), "seed", ""
        return Exploration(
            candidates=candidates,
            rest_before=max(0.0, 1.0 - float(self.before[rows].sum())),
            rest_after=max(0.0, 1.0 - float(after[rows].sum(dtype=np.float64))),
            entropy_before=self.entropy_before,
            entropy_after=entropy_bits(outcome.probs),
            survivors=int(outcome.ids.size),
            mass_kept=1.0 if everyone else float(self.before[outcome.ids].sum()),
            pick=pick,
            pick_rule=rule,
            removed=dict(outcome.removed),
            note=note,
            survivor_ids=outcome.ids,
            survivor_probs=outcome.probs,
            n_vocab=self.n_vocab,
        )

    def _rows(self, outcome: ChainOutcome) -> npt.NDArray[np.int64]:
        """The top candidates by the model, plus survivors the penalties pushed into the top."""
        rows = self.top_ids
        k = min(self.top, outcome.ids.size)
        if k:
            best_after = outcome.ids[np.argpartition(-outcome.probs, k - 1)[:k]]
            extra = np.setdiff1d(best_after, rows)
            if extra.size:
                rows = np.concatenate([rows, extra])
                rows = rows[np.lexsort((rows, -self.before[rows]))]
        return rows

    def _cuts(self, outcome: ChainOutcome, rows: npt.NDArray[np.int64]) -> dict[int, str]:
        """Which sampler removed each listed candidate that did not survive."""
        watched = {int(t): i for i, t in enumerate(self.top_ids)}
        cut: dict[int, str] = {}
        for t in (int(x) for x in rows):
            i = watched.get(t)
            if i is None:
                continue  # extra rows are survivors by construction
            for stage in STAGES:
                alive = outcome.stage_alive.get(stage)
                if alive is not None and not alive[i]:
                    cut[t] = stage
                    break
        return cut

    def _mirostat(self) -> Exploration:
        candidates = tuple(
            Candidate(
                int(t),
                self.text(int(t)),
                float(self.logits[t]),
                float(self.before[t]),
                0.0,
                None,
                False,
            )
            for t in self.top_ids
        )
        return Exploration(
            candidates=candidates,
            rest_before=max(0.0, 1.0 - float(self.before[self.top_ids].sum())),
            rest_after=None,
            entropy_before=self.entropy_before,
            entropy_after=None,
            survivors=None,
            mass_kept=None,
            pick=None,
            pick_rule="mirostat",
            removed={},
            note=MIROSTAT_NOTE,
            survivor_ids=np.empty(0, dtype=np.int64),
            survivor_probs=np.empty(0, dtype=np.float32),
            n_vocab=self.n_vocab,
        )


__all__ = [
    "GREEDY",
    "MIROSTAT_NOTE",
    "TOP_CANDIDATES",
    "Candidate",
    "Exploration",
    "ExplorerRow",
    "entropy_bits",
]
