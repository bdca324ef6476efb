"""What each sampler setting costs per token, measured, so the sampling panel can warn.

llama.cpp's native samplers differ a lot in cost on a large vocabulary: top-k keeps k
candidates with a partial sort, but top-p or typical-p with top-k off (0) sort all of
them, and so does mirostat v2. On a 262,144-token vocabulary (Gemma 3) that is a sort
of a quarter million candidates for every token. The figures below were measured by
`BENCH_COMMAND`; `cost_note` turns them into a line the panel can show beside the slider
that caused it.

API for the sampling panel::

    note = cost_note(settings, n_vocab)      # None when nothing is slow
    if note is not None:
        label_beside(note.fields).setText(note.text)   # e.g. fields == ("top_k", "top_p")
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.inference.sampling import SamplingSettings

BENCH_COMMAND = "python -m tests.bench.sampler_costs --rounds 9"
MEASURED_ON = "not measured yet"
SMALL_VOCAB, LARGE_VOCAB = 49_152, 262_144  # SmolLM2-135M, Gemma 3 270M
SLOW_US = 500.0  # extra µs per token over top-k 40 that earns a note beside the slider


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
    "default": ("the default (top-k 40, top-p 0.95, min-p 0.05, repeat 1.1)", ()),
    "top_k_large": ("a large top-k (10,000) with top-p", ("top_k", "top_p")),
    "full_dist": ("all samplers off (every token a candidate)", ("top_k",)),
    "min_p": ("min-p with top-k off", ("top_k", "min_p")),
    "top_p_no_top_k": ("top-p with top-k off", ("top_k", "top_p")),
    "typical_no_top_k": ("typical-p with top-k off", ("top_k", "typical_p")),
    "mirostat_1": ("mirostat 1", ("mirostat",)),
    "mirostat_2": ("mirostat 2", ("mirostat",)),
}

# µs per token (small vocab, large vocab), from BENCH_COMMAND; see MEASURED_ON.
_MEASURED: dict[str, tuple[float, float]] = {
    "greedy": (0.0, 0.0),
    "top_k": (0.0, 0.0),
    "default": (0.0, 0.0),
    "top_k_large": (0.0, 0.0),
    "full_dist": (0.0, 0.0),
    "min_p": (0.0, 0.0),
    "top_p_no_top_k": (0.0, 0.0),
    "typical_no_top_k": (0.0, 0.0),
    "mirostat_1": (0.0, 0.0),
    "mirostat_2": (0.0, 0.0),
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


def classify(settings: SamplingSettings) -> str:
    """The `COSTS` key whose cost `settings` has (what dominates its sampling time)."""
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
    return "default" if s.repeat_penalty != 1.0 else "top_k"


def cost_note(
    settings: SamplingSettings, n_vocab: int, slow_us: float = SLOW_US
) -> CostNote | None:
    """A note when `settings` cost more than `slow_us` per token over top-k 40 at `n_vocab`."""
    cost = COSTS[classify(settings)]
    extra = cost.us_at(n_vocab) - COSTS["top_k"].us_at(n_vocab)
    if extra < slow_us:
        return None
    advice = " Set top-k to 40 to avoid it." if "top_k" in cost.fields else ""
    return CostNote(
        fields=cost.fields,
        text=(
            f"Slow on this model: {cost.label} costs about {extra / 1000:.1f} ms more per "
            f"token than top-k 40 with {n_vocab:,} tokens in the vocabulary.{advice}"
        ),
        extra_us=extra,
    )
