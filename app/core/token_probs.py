"""Next-token probabilities from the last logits: the top alternatives, cheaply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TOP_N = 10


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
        top = np.argpartition(logits, -self._top_n)[-self._top_n :]
        top = top[np.argsort(logits[top])[::-1]]
        peak = logits[top[0]]
        np.subtract(logits, peak, out=self._scratch)
        np.exp(self._scratch, out=self._scratch)
        self._norm = float(self._scratch.sum())
        return TopTokens(top, logits[top], self._scratch[top] / self._norm)

    def prob_of(self, token_id: int) -> float:
        """Probability of `token_id` under the row last passed to `read`."""
        return float(self._scratch[token_id] / self._norm)
