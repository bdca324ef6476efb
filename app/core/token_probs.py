"""Next-token probabilities from the last logits: the top alternatives, cheaply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TOP_N = 10
# Tokens less likely than e^-12 times the best one cannot be in a top 10 that has at least
# ten more likely tokens; filtering by this first avoids a full argpartition per token.
_CANDIDATE_FLOOR = float(np.exp(-12.0))


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
        self._top_n = min(top_n, n_vocab)
        self._norm = 1.0

    def read(self, logits: npt.NDArray[np.float32]) -> TopTokens:
        """Compute the normaliser and the top tokens of `logits` (one vocabulary row)."""
        n = self._top_n
        scratch = self._scratch
        np.subtract(logits, logits.max(), out=scratch)
        np.exp(scratch, out=scratch)
        self._norm = float(scratch.sum())
        candidates = np.flatnonzero(scratch >= _CANDIDATE_FLOOR)
        if len(candidates) < n:
            candidates = np.argpartition(logits, -n)[-n:]
        elif len(candidates) > n:
            candidates = candidates[np.argpartition(logits[candidates], -n)[-n:]]
        top = candidates[np.argsort(logits[candidates])[::-1]]
        return TopTokens(top, logits[top], scratch[top] / self._norm)

    def prob_of(self, token_id: int) -> float:
        """Probability of `token_id` under the row last passed to `read`."""
        return float(self._scratch[token_id] / self._norm)
