"""What some sampler settings cost per generated token in llama.cpp, measured.

llama.cpp's top-k sorts only the k best candidates. Without top-k (top-k 0), top-p first
tries the best 256 and, when they do not reach p (a model that is unsure), sorts the whole
vocabulary; typical-p always sorts the whole vocabulary. That is paid at every token.

Figures: `python -m tests.bench.explorer` (llama.cpp's chain as `SamplerChain` builds
it, `llama_sampler_apply` on one row; median ms per token; random logits, "flat" = an
unsure model) on the development VM (2 cores, shared with other work, so the figures are
on the slow side). The default chain costs 0.06 ms (49,152 tokens) and 0.3 ms (262,144).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.inference.sampling import SamplingSettings


@dataclass(frozen=True)
class MeasuredCost:
    """ms per token at 49,152 and at 262,144 vocabulary entries (flat logits)."""

    ms_49k: float
    ms_262k: float

    def at(self, n_vocab: int) -> float:
        """Linear in the vocabulary's size between and beyond the two measurements."""
        slope = (self.ms_262k - self.ms_49k) / (262_144 - 49_152)
        return max(0.0, self.ms_49k + slope * (n_vocab - 49_152))


DEFAULT_CHAIN = MeasuredCost(0.07, 0.29)
TOP_P_WITHOUT_TOP_K = MeasuredCost(6.78, 39.46)
TYPICAL_WITHOUT_TOP_K = MeasuredCost(7.58, 46.39)

WORTH_SAYING_MS = 1.0
"""Costs below this per token are not worth a warning."""


def cost_warnings(settings: SamplingSettings, n_vocab: int) -> dict[str, str]:
    """Warnings keyed by the setting to show them beside ("top_p", "typical_p")."""
    warnings: dict[str, str] = {}
    if settings.is_greedy or settings.mirostat or settings.top_k > 0:
        return warnings
    if settings.top_p < 1.0:
        ms = TOP_P_WITHOUT_TOP_K.at(n_vocab)
        if ms >= WORTH_SAYING_MS:
            warnings["top_p"] = (
                f"Slower: with top-k off, top-p may sort all {n_vocab:,} tokens at every "
                f"token (up to {ms:.0f} ms each, measured). Set top-k (e.g. 40) to avoid it."
            )
    if settings.typical_p < 1.0:
        ms = TYPICAL_WITHOUT_TOP_K.at(n_vocab)
        if ms >= WORTH_SAYING_MS:
            warnings["typical_p"] = (
                f"Slower: with top-k off, typical-p sorts all {n_vocab:,} tokens at every "
                f"token (about {ms:.0f} ms each, measured). Set top-k (e.g. 40) to avoid it."
            )
    return warnings
