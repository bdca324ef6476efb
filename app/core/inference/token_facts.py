"""Per-token data that does not decide the next token, kept off the path between decodes.

Each generated token carries its probability and the top alternatives (ids, texts,
logits, probabilities at temperature 1). None of that decides the next token, yet a
softmax normaliser over a 262,144-token vocabulary costs several passes over 1 MiB of
logits. `TokenFactsHelper` computes it either inline or, when a core is free (or the model runs
on a GPU), on a helper thread while the next `llama_decode` runs: ctypes releases the GIL
during that call and numpy releases it in its loops, so the two truly overlap. The
engine copies the logits row first (one memcpy; `llama_decode` overwrites the row), so
the figures are exactly those of the inline path.

Sequencing: the engine submits token t, decodes t, then takes t's result before it
samples t+1, so at most one job is in flight and the helper never touches the vocabulary
while the engine thread does.
"""

from __future__ import annotations

import queue
import threading
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from app.core.inference.candidates import Scan
from app.core.inference.events import TokenAlternative
from app.core.inference.token_probs import ProbabilityReader
from app.core.inference.vocab import Vocabulary
from app.core.llama_child import name_os_thread

TokenDataMode = Literal["auto", "inline", "overlap"]


class TokenFacts(NamedTuple):
    """What the inspector shows for one generated token."""

    prob: float
    alternatives: tuple[TokenAlternative, ...]


class _Job:
    __slots__ = ("facts", "queued", "scanned", "token")

    def __init__(self, token: int, scanned: Scan | None) -> None:
        self.token = token
        self.scanned = scanned
        self.queued = False
        self.facts: TokenFacts | BaseException | None = None


class TokenFactsHelper:
    """Probabilities and alternatives of generated tokens, inline or overlapped.

    Use as a context manager per reply: the helper thread (overlap mode only) starts on
    entry and is joined on exit.

    Args:
        vocab: The loaded model's vocabulary (for the alternatives' texts).
        reader: The softmax/top-n reader sized for the vocabulary.
        overlap: Compute on a helper thread while the engine decodes.
    """

    def __init__(self, vocab: Vocabulary, reader: ProbabilityReader, *, overlap: bool) -> None:
        self._vocab = vocab
        self._reader = reader
        self.overlap = overlap
        self._copy: npt.NDArray[np.float32] | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TokenFactsHelper:
        if self.overlap:
            self._thread = threading.Thread(
                target=self._serve, name="hearth-token-data", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def submit(
        self, logits: npt.NDArray[np.float32], token: int, scanned: Scan | None = None
    ) -> _Job:
        """Start on `token`, sampled from `logits` (a view llama.cpp may overwrite next;
        `scanned` is its group-maxima scan if the sampler made one).

        Inline, the facts are computed now; overlapped, the row is copied and the helper
        computes while the caller decodes. Pass the result to `take`.
        """
        job = _Job(token, scanned)
        if self._thread is None:
            job.facts = self._compute(logits, job)
            return job
        if self._copy is None:
            self._copy = np.empty_like(logits)
        np.copyto(self._copy, logits)
        job.queued = True
        self._jobs.put(job)
        return job

    def take(self, job: _Job) -> TokenFacts:
        """The facts of a submitted token (waits for the helper if it is still at work)."""
        if job.queued:
            job.queued = False
            done = self._done.get()
            assert done is job, "token data jobs are taken in order, one at a time"
        facts = job.facts
        if isinstance(facts, BaseException):
            raise facts
        assert facts is not None
        return facts

    def _serve(self) -> None:
        name_os_thread("hearth-tokdata")
        while (job := self._jobs.get()) is not None:
            assert self._copy is not None
            try:
                job.facts = self._compute(self._copy, job)
            except BaseException as exc:  # handed to the engine thread by `take`
                job.facts = exc
            self._done.put(job)

    def _compute(self, logits: npt.NDArray[np.float32], job: _Job) -> TokenFacts:
        reader, text = self._reader, self._vocab.token_text
        top = reader.read(logits, job.scanned)
        return TokenFacts(
            prob=reader.prob_of(job.token),
            alternatives=tuple(
                TokenAlternative(i, text(i), lg, p)
                for i, lg, p in zip(
                    top.ids.tolist(), top.logits.tolist(), top.probs.tolist(), strict=True
                )
            ),
        )
