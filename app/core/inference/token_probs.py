"""Next-token probabilities from the last logits: the top alternatives, cheaply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.inference.token_data import MAX_TOP_N, TOP_N

__all__ = ["MAX_TOP_N", "TOP_N", "ProbabilityReader", "TopTokens"]
_ROWS = 64  # the top-n search looks only inside the n groups with the highest maxima


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
        self._main = n_vocab - n_vocab % _ROWS
        self._groups = self._main // _ROWS
        self._offsets = np.arange(_ROWS) * self._groups
        self._norm = 1.0

    @property
    def top_n(self) -> int:
        """How many alternatives `read` returns."""
        return self._top_n

    @top_n.setter
    def top_n(self, n: int) -> None:
        self._top_n = max(0, min(n, self._n_vocab))

    def read(self, logits: npt.NDArray[np.float32]) -> TopTokens:
        """Compute the normaliser and the top tokens of `logits` (one vocabulary row)."""
        scratch = self._scratch
        maxima = None
        if self._groups > self._top_n:
            # The group maxima serve the top-n search and give the row's maximum: four
            # passes over the row in all (maxima, subtract, exp, sum) instead of five.
            maxima = logits[: self._main].reshape(_ROWS, self._groups).max(axis=0)
            peak = maxima.max()
            if self._main < logits.shape[0]:
                peak = max(peak, logits[self._main :].max())
        else:
            peak = logits.max()
        np.subtract(logits, peak, out=scratch)
        np.exp(scratch, out=scratch)
        self._norm = float(scratch.sum())
        top = self._top_ids(logits, maxima)
        return TopTokens(top, logits[top], scratch[top] / self._norm)

    def _top_ids(
        self, logits: npt.NDArray[np.float32], maxima: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.intp]:
        """The top-n ids, best first.

        Tokens are split into groups (token i in group i mod G, so the group maxima are one
        vectorised max over 64 rows). A token in the top n lies in a group whose maximum is
        among the n highest, so only those groups (and the ragged tail) are searched: exact,
        and several times cheaper than an argpartition of the whole row.
        """
        n = self._top_n
        if n == 0:
            return np.empty(0, dtype=np.intp)
        candidates: npt.NDArray[np.intp]
        if maxima is not None:
            groups = np.argpartition(maxima, -n)[-n:]
            candidates = (groups[:, None] + self._offsets).ravel()
            if self._main < logits.shape[0]:
                candidates = np.concatenate([candidates, np.arange(self._main, logits.shape[0])])
        else:
            candidates = np.arange(logits.shape[0])
        values = logits[candidates]
        best = np.argpartition(values, -n)[-n:] if len(candidates) > n else np.arange(n)
        best = best[np.argsort(-values[best], kind="stable")]
        return candidates[best]

    def prob_of(self, token_id: int) -> float:
        """Probability of `token_id` under the row last passed to `read`."""
        return float(self._scratch[token_id] / self._norm)
