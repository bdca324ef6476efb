"""Build llama.cpp's native sampler chain from `SamplingSettings`."""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from app.core.errors import InvalidSettingError
from app.core.inference.candidates import GroupMaxima, Scan, survivors
from app.core.inference.sampling import SamplingSettings

MIROSTAT_M = 100  # candidates mirostat v1 uses to estimate s_hat (llama.cpp's default)
# Layout of llama.cpp's llama_token_data: int32 id, float logit, float p.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class SamplerChain:
    """An owned `llama_sampler` chain; call `close()` (or use `with`) to free it.

    The order follows llama.cpp's: penalties, top-k, typical, top-p, min-p, temperature,
    then the final pick (dist, greedy or mirostat). A GBNF `grammar` (with the `vocab` it
    needs) goes right after the penalties, so only tokens it allows can be picked.

    `pick` hands the chain only the tokens its top-k (or greedy) can keep, when that set
    is known exactly (`candidates`); `keep` says how many, or None for the whole row.
    """

    def __init__(
        self,
        settings: SamplingSettings,
        seed: int,
        n_vocab: int,
        n_ctx: int,
        *,
        grammar: str | None = None,
        vocab: Any = None,
    ) -> None:
        self.settings = settings
        self.seed = seed
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain: Any = llama_cpp.llama_sampler_chain_init(params)
        self._penalties: Any = None
        self._grammar: Any = None
        self._groups = GroupMaxima(n_vocab)
        self._grow(0)
        self._array = llama_cpp.llama_token_data_array(self._pointer, 0, -1, False)
        self._array_ref = ctypes.byref(self._array)
        s = settings
        self.penalty_window = s.penalty_window(n_ctx)
        self._recent: deque[int] | None = None
        """The penalties' window, mirrored (the tokens they may change)."""
        self.keep: int | None = None if grammar is not None else s.survivors
        if self.penalty_window:
            self._recent = deque(maxlen=self.penalty_window)
            self._penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                self.penalty_window,
                s.repeat_penalty,
                s.frequency_penalty,
                s.presence_penalty,
            )
            self._add(self._penalties)
        if grammar is not None:
            self._add_grammar(grammar, vocab)
        if s.is_greedy:
            self._add(llama_cpp.llama_sampler_init_greedy())
        elif s.mirostat == 1:
            self._add(llama_cpp.llama_sampler_init_temp(s.temperature))
            self._add(
                llama_cpp.llama_sampler_init_mirostat(
                    n_vocab, seed, s.mirostat_tau, s.mirostat_eta, MIROSTAT_M
                )
            )
        elif s.mirostat == 2:
            self._add(llama_cpp.llama_sampler_init_temp(s.temperature))
            self._add(
                llama_cpp.llama_sampler_init_mirostat_v2(seed, s.mirostat_tau, s.mirostat_eta)
            )
        else:
            if s.top_k > 0:
                self._add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            if s.typical_p < 1.0:
                self._add(llama_cpp.llama_sampler_init_typical(s.typical_p, 1))
            if s.top_p < 1.0:
                self._add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0.0:
                self._add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            self._add(llama_cpp.llama_sampler_init_temp(s.temperature))
            self._add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def _add_grammar(self, grammar: str, vocab: Any) -> None:
        if vocab is None:
            self.close()
            raise ValueError("a grammar needs the model's vocabulary")
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            self.close()
            raise InvalidSettingError("llama.cpp rejected the grammar (see the log for why)")
        self._grammar = sampler
        self._add(sampler)

    def remember(self, history: Sequence[int]) -> None:
        """Feed recent tokens to the penalty window (after a rebuild mid-reply).

        Only the penalties see them: a grammar constrains the reply, not the prompt.
        """
        if self._penalties is not None:
            for token in history[-self.penalty_window :]:
                llama_cpp.llama_sampler_accept(self._penalties, token)
                self._accepted(token)

    def _accepted(self, token: int) -> None:
        if self._recent is not None:
            self._recent.append(token)

    def replay_grammar(self, reply: Sequence[int]) -> None:
        """Advance the grammar over the reply so far (after a rebuild mid-reply)."""
        if self._grammar is not None:
            for token in reply:
                llama_cpp.llama_sampler_accept(self._grammar, token)

    def pick(
        self, logits: npt.NDArray[np.float32], ctx: Any = None, index: int = -1, depth: int = 0
    ) -> tuple[int, Scan | None]:
        """Pick (and accept) the next token from `logits`, a row of batch position `index`
        of `ctx` (or a saved row when `ctx` is None).

        Returns the token and the row's scan when one was made (for
        `ProbabilityReader.read`), its candidate search at least `depth` deep. With `keep`
        set, only the chain's survivors reach it.
        """
        if self.keep is not None:
            window = set(self._recent) if self._recent else frozenset()
            ids, scanned = survivors(logits, self._groups, self.keep, window, depth)
            if ids.shape[0] >= min(self.keep, logits.shape[0]):  # NaNs compare false
                return self._sample_ids(ids, logits[ids]), scanned
            return self.sample_logits(logits), scanned
        if ctx is None:
            return self.sample_logits(logits), None
        return self.sample(ctx, index), None

    def sample_logits(self, logits: npt.NDArray[np.float32]) -> int:
        """Pick (and accept) the next token from a saved row of logits, every token a
        candidate: what `llama_sampler_sample` does with the context's logits."""
        return self._sample_ids(np.arange(logits.shape[0], dtype=np.int32), logits)

    def _sample_ids(self, ids: npt.NDArray[np.int32], logits: npt.NDArray[np.float32]) -> int:
        n = ids.shape[0]
        if n > self._data.shape[0]:
            self._grow(n)
        array = self._array
        self._ids[:n] = ids
        self._logits[:n] = logits
        self._probs[:n] = 0.0
        # All four, as `llama_sampler_sample` sets them: the last call's samplers changed them.
        array.data, array.size, array.selected, array.sorted = self._pointer, n, -1, False
        llama_cpp.llama_sampler_apply(self._chain, self._array_ref)
        token = int(self._ids[array.selected])
        llama_cpp.llama_sampler_accept(self._chain, token)
        self._accepted(token)
        return token

    def _grow(self, n: int) -> None:
        """The candidate buffer `llama_sampler_apply` works in, made once per size: the
        pick runs between two decodes, where every allocation and view runs cold."""
        self._data = np.empty(n, dtype=_TOKEN_DATA)
        self._ids, self._logits, self._probs = (self._data[f] for f in ("id", "logit", "p"))
        self._pointer: Any = self._data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Pick (and accept) the next token from the logits of batch position `index`
        (default: the last one read), every token a candidate."""
        token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        self._accepted(token)
        return token

    def close(self) -> None:
        """Free the native chain (idempotent)."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> SamplerChain:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
