"""The few tokens a sampler chain can pick, found without sorting the vocabulary.

`llama_sampler_sample` copies every logit into a candidate array before the chain runs:
262,144 entries a token on Gemma 3, about 1.2 ms on this project's CPU before any sampler
has looked at them, and the repeat penalty then visits every one (several ms more). Yet
a chain that starts with top-k K keeps only the K best tokens, and greedy keeps one. So
Hearth hands the native chain only the tokens that can survive its top-k, and llama.cpp
does the rest exactly as it would on the whole row.

Which tokens those are, exactly: with no penalties, every token whose logit is at least
the K-th largest (ties at the border included). The penalties change only the tokens in
their window (D distinct ids), so take the top K + D and the window itself: a token
outside both keeps its logit and has K unpenalised tokens strictly above it, so no top-k
keeps it. Greedy is top-k 1: the native greedy picks the first of equal maxima, and the
candidates go in ascending id order, as in the full array, so it picks the same one.

The one difference from the full row: exactly equal logits inside the top k may come out
of llama.cpp's (unstable) partial sort in another order, which can swap which of two
equally likely tokens a given random draw picks. The distribution is the same.

The search is a scan of group maxima (token i belongs to group i mod G; the maxima are one
vectorised max over 64 rows), which `ProbabilityReader` shares for its top-n. The search
itself is shared too: a set that holds every token at least the m-th largest serves a
top-k keeping fewer than m (the argument above holds for any larger m), so the sampler
searches once, deep enough for the inspector's top-n as well (`Scan.best`).

Why sharing matters more than the arithmetic: `llama_decode` streams the weights through
the caches, so every call between two decodes runs cold. Measured in the decode loop,
each numpy call there costs several times what it costs warm (a 49,152-logit max: 11 µs
warm, about 100 µs right after a decode); the number of calls, not their size, sets
the host time per token.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

ROWS = 64
"""Tokens per group: the row is read as ROWS x G, and each column is one group."""


class Scan(NamedTuple):
    """One row's group maxima and maximum, and the tokens found from them when searched."""

    maxima: npt.NDArray[np.float32]
    peak: float
    best: npt.NDArray[np.intp] | None = None
    """Every token whose logit is at least the `depth`-th largest (ties included), in no
    particular order; None when no search was made."""
    depth: int = 0


class GroupMaxima:
    """One row's group maxima, and the top tokens found from them."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.main = n_vocab - n_vocab % ROWS
        self.groups = self.main // ROWS
        self.offsets = np.arange(ROWS) * self.groups
        self.tail = np.arange(self.main, n_vocab)

    def scan(self, logits: npt.NDArray[np.float32]) -> Scan:
        """The group maxima of `logits` (one pass over the row) and the row's maximum."""
        maxima = logits[: self.main].reshape(ROWS, self.groups).max(axis=0)
        peak = float(maxima.max()) if self.groups else float("-inf")
        if self.main < self.n_vocab:
            peak = max(peak, float(logits[self.main :].max()))
        return Scan(maxima, peak)

    def at_least(
        self, logits: npt.NDArray[np.float32], maxima: npt.NDArray[np.float32], m: int
    ) -> npt.NDArray[np.intp]:
        """Every token whose logit is at least the `m`-th largest, ties included, in no
        particular order.

        The groups kept are those whose maximum is at least the m-th largest maximum: the
        m best tokens lie in at most m groups, each with a maximum at least the m-th best
        token, so every token that ties or beats it is in one of them.
        """
        if m >= self.n_vocab or self.groups <= m:
            candidates = np.arange(self.n_vocab)
        else:
            border = np.partition(maxima, self.groups - m)[self.groups - m]
            groups = np.flatnonzero(maxima >= border)
            candidates = (groups[:, None] + self.offsets).ravel()
            if self.main < self.n_vocab:
                candidates = np.concatenate([candidates, self.tail])
        values = logits[candidates]
        if len(values) <= m:
            return candidates
        border = np.partition(values, len(values) - m)[len(values) - m]
        kept: npt.NDArray[np.intp] = candidates[values >= border]
        return kept


def survivors(
    logits: npt.NDArray[np.float32],
    scan: GroupMaxima,
    keep: int,
    window: AbstractSet[int] = frozenset(),
    depth: int = 0,
) -> tuple[npt.NDArray[np.int32], Scan]:
    """The tokens a chain whose top-k keeps `keep` can pick, penalty window included, in
    ascending id order (see the module docstring for why this set is exact), and the
    row's scan, searched at least `depth` deep (for a top-n read of the same row).

    A candidate set deeper than the chain needs holds more tokens its top-k drops: the
    pick is the same.
    """
    maxima, peak = scan.scan(logits)[:2]
    depth = max(depth, keep + len(window))
    best = scan.at_least(logits, maxima, depth)
    if window:
        ids = np.concatenate([best, np.fromiter(window, dtype=np.intp, count=len(window))])
        ids = np.unique(ids)
    else:
        ids = np.sort(best)  # the groups' ids are distinct: a sort is a unique here
    return ids.astype(np.int32), Scan(maxima, peak, best, depth)
