"""Next-token probabilities from the last logits: the top alternatives, cheaply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.inference.candidates import GroupMaxima, Scan
from app.core.inference.token_data import MAX_TOP_N, TOP_N

__all__ = ["MAX_TOP_N", "TOP_N", "ProbabilityReader", "TopTokens"]

SHIFT_FREE = (-60.0, 80.0)
"""Softmax skips subtracting the row's maximum when that lies inside (-60, 80 - ln n):
float32's exp overflows only past 88.7, so n terms sum to at most e^80, and the largest
term is over e^27 times any term exp leaves subnormal. The subtraction is one more pass
over the row, and it runs cold, between two decodes (see `candidates`)."""


@dataclass(frozen=True)
class TopTokens:
    """The `n` most likely token ids (best first), their logits and probabilities."""

    ids: npt.NDArray[np.intp]
    logits: npt.NDArray[np.float32]
    probs: npt.NDArray[np.float32]


class ProbabilityReader:
    """Softmax at temperature 1 over one row of logits, reusing one scratch buffer."""

    def __init__(self, n_vocab: int, top_n: int = TOP_N) -> None:
        self._scratch = np.empty(n_vocab, dtype=np.float32)
        self._n_vocab = n_vocab
        self._top_n = min(top_n, n_vocab)
        self.groups = GroupMaxima(n_vocab)
        self._norm = 1.0
        self._shift_free = (SHIFT_FREE[0], SHIFT_FREE[1] - float(np.log(max(n_vocab, 1))))

    @property
    def top_n(self) -> int:
        """How many alternatives `read` returns."""
        return self._top_n

    @top_n.setter
    def top_n(self, n: int) -> None:
        self._top_n = max(0, min(n, self._n_vocab))

    def read(
        self,
        logits: npt.NDArray[np.float32],
        scanned: Scan | None = None,
    ) -> TopTokens:
        """Compute the normaliser and the top tokens of `logits` (one vocabulary row).

        `scanned` is the row's `GroupMaxima.scan`, when the sampler already made it (with
        its candidate search, when that went deep enough). The group maxima serve the
        top-n search and give the row's maximum: three passes over the row in all (maxima,
        exp, sum), four when the maximum is far from 0 (`SHIFT_FREE`).
        """
        if scanned is None:
            scanned = self.groups.scan(logits)
        scratch = self._scratch
        low, high = self._shift_free
        if low < scanned.peak < high:
            np.exp(logits, out=scratch)  # the same ratios, one pass fewer
        else:
            np.subtract(logits, np.float32(scanned.peak), out=scratch)
            np.exp(scratch, out=scratch)
        self._norm = float(scratch.sum())
        top = self._top_ids(logits, scanned)
        return TopTokens(top, logits[top], scratch[top] / self._norm)

    def _top_ids(self, logits: npt.NDArray[np.float32], scanned: Scan) -> npt.NDArray[np.intp]:
        """The top-n ids, best first (equal logits by id), searched only inside the groups
        whose maxima can hold them: exact, and several times cheaper than an argpartition
        of the whole row."""
        n = self._top_n
        if n == 0:
            return np.empty(0, dtype=np.intp)
        if scanned.best is not None and scanned.depth >= n:
            candidates = scanned.best
        else:
            candidates = self.groups.at_least(logits, scanned.maxima, n)
        order = np.lexsort((candidates, -logits[candidates]))[:n]
        return candidates[order]

    def prob_of(self, token_id: int) -> float:
        """Probability of `token_id` under the row last passed to `read`."""
        return float(self._scratch[token_id] / self._norm)
