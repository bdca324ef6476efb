"""What the samplers would do to one token's candidates: a numpy re-run of llama.cpp's chain.

Each generated token carries its top candidates' logits (`TokenEvent.alternatives`). This
module applies top-k, typical-p, top-p, min-p and temperature to those logits in the same
order and with the same rules as llama.cpp's sampler chain, so a person can move a slider
and see which candidates survive and how likely each becomes. Penalties need the token
history and mirostat needs its running state, so neither is previewed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.inference.sampling import SamplingSettings

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SamplerPreview:
    """Probabilities of the candidates (same order as given) after the samplers.

    `kept[i]` is False for a candidate a sampler removed (its probability is 0).
    `greedy` means the top candidate is picked with certainty.
    """

    probs: FloatArray
    kept: npt.NDArray[np.bool_]
    greedy: bool


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = np.exp(logits - logits.max())
    result: FloatArray = shifted / shifted.sum()
    return result


def preview(logits: npt.ArrayLike, settings: SamplingSettings) -> SamplerPreview | None:
    """Apply the settings' truncation samplers and temperature to candidate logits.

    Returns None for mirostat, whose choice depends on state a preview does not have.
    """
    if settings.mirostat:
        return None
    raw = np.asarray(logits, dtype=np.float64)
    n = raw.size
    kept = np.ones(n, dtype=bool)
    if n == 0:
        return SamplerPreview(np.zeros(0), kept, settings.is_greedy)
    if settings.is_greedy:
        probs = np.zeros(n)
        probs[int(np.argmax(raw))] = 1.0
        return SamplerPreview(probs, probs > 0, True)

    order = np.argsort(-raw, kind="stable")  # candidates best first, as llama.cpp sorts them
    active = order.copy()
    if 0 < settings.top_k < active.size:
        active = active[: settings.top_k]
    if settings.typical_p < 1.0:
        active = _typical(raw, active, settings.typical_p)
    if settings.top_p < 1.0:
        probs = _softmax(raw[active])
        cumulative = np.cumsum(probs)
        last = int(np.searchsorted(cumulative, settings.top_p, side="left"))
        active = active[: max(1, last + 1)]
    if settings.min_p > 0.0:
        floor = raw[active].max() + np.log(settings.min_p)
        survivors = active[raw[active] >= floor]
        active = survivors if survivors.size else active[:1]

    kept[:] = False
    kept[active] = True
    probs = np.zeros(n)
    probs[active] = _softmax(raw[active] / settings.temperature)
    return SamplerPreview(probs, kept, False)


def _typical(raw: FloatArray, active: npt.NDArray[np.intp], p: float) -> npt.NDArray[np.intp]:
    """Locally typical sampling: keep the tokens whose surprise is closest to the entropy."""
    probs = _softmax(raw[active])
    logp = np.log(probs)
    entropy = -(probs * logp).sum()
    shift = np.abs(-logp - entropy)
    by_typicality = np.argsort(shift, kind="stable")
    cumulative = np.cumsum(probs[by_typicality])
    last = int(np.searchsorted(cumulative, p, side="right"))
    keep = by_typicality[: max(1, min(last + 1, active.size))]
    return active[np.sort(keep)]
