"""Build llama.cpp's native sampler chain from `SamplingSettings`."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from app.core.errors import InvalidSettingError
from app.core.inference.sampling import SamplingSettings

MIROSTAT_M = 100  # candidates mirostat v1 uses to estimate s_hat (llama.cpp's default)
# Layout of llama.cpp's llama_token_data: int32 id, float logit, float p.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class SamplerChain:
    """An owned `llama_sampler` chain; call `close()` (or use `with`) to free it.

    The order follows llama.cpp's: penalties, top-k, typical, top-p, min-p, temperature,
    then the final pick (dist, greedy or mirostat). A GBNF `grammar` (with the `vocab` it
    needs) goes right after the penalties, so only tokens it allows can be picked.
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
        s = settings
        window = n_ctx if s.repeat_last_n < 0 else s.repeat_last_n
        self.penalty_window = window if self._uses_penalties(s) else 0
        if self.penalty_window:
            self._penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab, window, s.repeat_penalty, s.frequency_penalty, s.presence_penalty
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

    @staticmethod
    def _uses_penalties(s: SamplingSettings) -> bool:
        active = s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty
        return bool(active) and s.repeat_last_n != 0

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

    def replay_grammar(self, reply: Sequence[int]) -> None:
        """Advance the grammar over the reply so far (after a rebuild mid-reply)."""
        if self._grammar is not None:
            for token in reply:
                llama_cpp.llama_sampler_accept(self._grammar, token)

    def sample_logits(self, logits: npt.NDArray[np.float32]) -> int:
        """Pick (and accept) the next token from a saved row of logits.

        Does what `llama_sampler_sample` does with the context's logits, on this row.
        """
        n = logits.shape[0]
        data = np.empty(n, dtype=_TOKEN_DATA)
        data["id"] = np.arange(n, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        candidates = llama_cpp.llama_token_data_array(pointer, n, -1, False)
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        token = int(candidates.data[candidates.selected].id)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Pick (and accept) the next token from the logits of batch position `index`
        (default: the last one read)."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        """Free the native chain (idempotent)."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> SamplerChain:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
