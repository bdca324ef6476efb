"""What each sampler setting costs per token, measured, so the sampling panel can warn.

llama.cpp's native samplers differ a lot in cost on a large vocabulary: top-k keeps k
candidates with a partial sort, but top-p or typical-p with top-k off (0) sort all of
them, and so does mirostat v2. On a 262,144-token vocabulary (Gemma 3) that is a sort
of a quarter million candidates for every token. The penalties sampler (repeat, presence,
frequency) visits every candidate too: measured, it is the dearest part of the default
settings on a large vocabulary. The figures below were measured by
`BENCH_COMMAND`; `cost_notes` turns them into a line the panel can show beside the slider
that caused it.

API for the sampling panel::

    for note in cost_notes(settings, n_vocab):    # empty when nothing is slow
        label_beside(note.fields).setText(note.text)  # e.g. fields == ("top_k", "top_p")
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.inference.sampling import SamplingSettings

BENCH_COMMAND = "python -m tests.bench.sampler_costs --rounds 9"
MEASURED_ON = (
    "2-core x86_64 VM shared with other jobs (noisy), CPU build of llama-cpp-python 0.3.36, "
    "2 threads, median of 9 rounds x 30 samples, 2026-12-02"
)
SMALL_VOCAB, LARGE_VOCAB = 49_152, 262_144  # SmolLM2-135M, Gemma 3 270M
SLOW_US = 1000.0  # extra µs per token over top-k 40 that earns a note beside the slider


@dataclass(frozen=True)
class SamplerCost:
    """One kind of sampler setting and its measured cost per token.

    Attributes:
        key: Stable name (see `classify`).
        label: What a person would call it.
        fields: The `SamplingSettings` fields that choose it (where a note belongs).
        small_us: µs per token (the whole `llama_sampler_sample`) at `SMALL_VOCAB` tokens.
        large_us: The same at `LARGE_VOCAB` tokens.
    """

    key: str
    label: str
    fields: tuple[str, ...]
    small_us: float
    large_us: float

    def us_at(self, n_vocab: int) -> float:
        """Cost at `n_vocab` tokens, linear in the vocabulary between the two measurements
        (the sorts are n log n; over this range linear is within a few percent)."""
        slope = (self.large_us - self.small_us) / (LARGE_VOCAB - SMALL_VOCAB)
        return max(0.0, self.small_us + slope * (n_vocab - SMALL_VOCAB))


# Representative settings of each kind; the bench times exactly these.
CASES: dict[str, SamplingSettings] = {
    "greedy": SamplingSettings(temperature=0.0, repeat_penalty=1.0),
    "top_k": SamplingSettings(top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0),
    "default": SamplingSettings(),
    "top_k_large": SamplingSettings(top_k=10_000, top_p=0.95, min_p=0.0, repeat_penalty=1.0),
    "full_dist": SamplingSettings(top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0),
    "min_p": SamplingSettings(top_k=0, top_p=1.0, min_p=0.05, repeat_penalty=1.0),
    "top_p_no_top_k": SamplingSettings(top_k=0, top_p=0.95, min_p=0.0, repeat_penalty=1.0),
    "typical_no_top_k": SamplingSettings(
        top_k=0, top_p=1.0, min_p=0.0, typical_p=0.9, repeat_penalty=1.0
    ),
    "mirostat_1": SamplingSettings(mirostat=1, repeat_penalty=1.0),
    "mirostat_2": SamplingSettings(mirostat=2, repeat_penalty=1.0),
}

_LABELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "greedy": ("greedy (temperature 0)", ("temperature",)),
    "top_k": ("top-k 40", ("top_k",)),
    "default": (
        "a repeat, presence or frequency penalty",
        ("repeat_penalty", "presence_penalty", "frequency_penalty"),
    ),
    "top_k_large": ("a large top-k (10,000) with top-p", ("top_k", "top_p")),
    "full_dist": ("all samplers off (every token a candidate)", ("top_k",)),
    "min_p": ("min-p with top-k off", ("top_k", "min_p")),
    "top_p_no_top_k": ("top-p with top-k off", ("top_k", "top_p")),
    "typical_no_top_k": ("typical-p with top-k off", ("top_k", "typical_p")),
    "mirostat_1": ("mirostat 1", ("mirostat",)),
    "mirostat_2": ("mirostat 2", ("mirostat",)),
}

# µs per token (small vocab, large vocab), from BENCH_COMMAND; see MEASURED_ON. Every row
# includes llama_sampler_sample copying the logits into a candidate array (the greedy row).
_MEASURED: dict[str, tuple[float, float]] = {
    "greedy": (89, 1786),
    "top_k": (74, 1719),
    "default": (605, 5308),
    "top_k_large": (5343, 4137),
    "full_dist": (1043, 6680),
    "min_p": (286, 2124),
    "top_p_no_top_k": (1933, 5929),
    "typical_no_top_k": (10267, 78163),
    "mirostat_1": (11787, 62897),
    "mirostat_2": (12238, 45283),
}

COSTS: dict[str, SamplerCost] = {
    key: SamplerCost(key, label, fields, *_MEASURED[key])
    for key, (label, fields) in _LABELS.items()
}


@dataclass(frozen=True)
class CostNote:
    """A slow setting, said for a person: show `text` beside the sliders in `fields`."""

    fields: tuple[str, ...]
    text: str
    extra_us: float


def penalties_active(settings: SamplingSettings) -> bool:
    """True when the chain has llama.cpp's penalties sampler, which visits every token of
    the vocabulary (as `SamplerChain` decides)."""
    s = settings
    active = s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty
    return bool(active) and s.repeat_last_n != 0


def classify(settings: SamplingSettings) -> str:
    """The `COSTS` key of the sampler that dominates `settings`' cost, penalties aside
    ("default" is top-k 40 with the default penalties; see `estimate_us`)."""
    s = settings
    if s.is_greedy:
        return "greedy"
    if s.mirostat:
        return f"mirostat_{s.mirostat}"
    if s.top_k == 0:
        if s.top_p < 1.0:
            return "top_p_no_top_k"
        if s.typical_p < 1.0:
            return "typical_no_top_k"
        return "min_p" if s.min_p > 0.0 else "full_dist"
    if s.top_k > 1000:
        return "top_k_large"
    return "default" if penalties_active(s) else "top_k"


def _penalty_us(n_vocab: int) -> float:
    return max(0.0, COSTS["default"].us_at(n_vocab) - COSTS["top_k"].us_at(n_vocab))


def estimate_us(settings: SamplingSettings, n_vocab: int) -> float:
    """Estimated µs per token of sampling with `settings` at `n_vocab` tokens."""
    key = classify(settings)
    extra = _penalty_us(n_vocab) if penalties_active(settings) and key != "default" else 0.0
    return COSTS[key].us_at(n_vocab) + extra


def cost_notes(
    settings: SamplingSettings, n_vocab: int, slow_us: float = SLOW_US
) -> tuple[CostNote, ...]:
    """Notes for each part of `settings` that costs more than `slow_us` per token over
    top-k 40 at `n_vocab` tokens: the sampler kind, and the penalties (shown separately,
    beside their own sliders)."""
    notes = []
    key = classify(settings)
    base = COSTS["top_k"].us_at(n_vocab)
    if key != "default":
        cost = COSTS[key]
        extra = cost.us_at(n_vocab) - base
        if extra >= slow_us:
            advice = " Set top-k to 40 to avoid it." if "top_k" in cost.fields else ""
            notes.append(_note(cost.fields, cost.label, extra, n_vocab, advice))
    if penalties_active(settings):
        extra = _penalty_us(n_vocab)
        if extra >= slow_us:
            cost = COSTS["default"]
            advice = " Set them to 1 and 0 to avoid it."
            notes.append(_note(cost.fields, cost.label, extra, n_vocab, advice))
    return tuple(notes)


def _note(fields: tuple[str, ...], label: str, extra: float, n_vocab: int, advice: str) -> CostNote:
    return CostNote(
        fields=fields,
        text=(
            f"Slow on this model: {label} costs about {extra / 1000:.1f} ms more per token "
            f"than top-k 40 with {n_vocab:,} tokens in the vocabulary.{advice}"
        ),
        extra_us=extra,
    )
