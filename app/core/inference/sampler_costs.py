"""What each sampler setting costs per token, measured, so the sampling panel can warn.

Hearth hands llama.cpp's chain only the tokens its top-k (or greedy) can keep
(`candidates`), so with top-k on, sampling costs a scan of the row and a few hundred
candidates, whatever the vocabulary and whatever the penalties. With top-k off (0) or
very large, or with mirostat, the chain needs every token: top-p or typical-p then sort
all of them, and the penalties sampler visits every one. On a 262,144-token vocabulary
(Gemma 3) that is a quarter million candidates for every token. The figures below were
measured by `BENCH_COMMAND`; `cost_notes` turns them into a line the panel can show
beside the slider that caused it.

API for the sampling panel::

    for note in cost_notes(settings, n_vocab):    # empty when nothing is slow
        label_beside(note.fields).setText(note.text)  # e.g. fields == ("top_k", "top_p")
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.inference.sampling import SamplingSettings

BENCH_COMMAND = "python -m tests.bench.sampler_costs --rounds 9"
MEASURED_ON = (
    "2-core x86_64 VM, quiet, CPU build of llama-cpp-python 0.3.36, 2 threads, "
    "median of 9 rounds x 30 picks from one row (cache warm), 2026-12-02"
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
    "default": ("top-k 40 with the default repeat penalty", ("top_k", "repeat_penalty")),
    "top_k_large": ("a large top-k (10,000) with top-p", ("top_k", "top_p")),
    "full_dist": ("all samplers off (every token a candidate)", ("top_k",)),
    "min_p": ("min-p with top-k off", ("top_k", "min_p")),
    "top_p_no_top_k": ("top-p with top-k off", ("top_k", "top_p")),
    "typical_no_top_k": ("typical-p with top-k off", ("top_k", "typical_p")),
    "mirostat_1": ("mirostat 1", ("mirostat",)),
    "mirostat_2": ("mirostat 2", ("mirostat",)),
}

# µs per token (small vocab, large vocab) of `SamplerChain.pick`, from BENCH_COMMAND; see
# MEASURED_ON. Rows that need the whole row include llama_sampler_sample copying every
# logit into a candidate array; the others include the scan that finds the survivors.
_MEASURED: dict[str, tuple[float, float]] = {
    "greedy": (56, 56),
    "top_k": (83, 73),
    "default": (108, 83),
    "top_k_large": (2524, 1560),
    "full_dist": (447, 2493),
    "min_p": (141, 823),
    "top_p_no_top_k": (707, 2656),
    "typical_no_top_k": (4164, 24396),
    "mirostat_1": (3829, 20055),
    "mirostat_2": (4169, 20642),
    "penalties": (665, 4343),
}

COSTS: dict[str, SamplerCost] = {
    key: SamplerCost(key, label, fields, *_MEASURED[key])
    for key, (label, fields) in _LABELS.items()
}
PENALTY_CASE = SamplingSettings(top_k=0, top_p=1.0, min_p=0.0)
"""Every token a candidate with the default repeat penalty: against "full_dist", what the
penalties cost when the chain needs the whole row."""
PENALTIES = SamplerCost(
    "penalties",
    "a repeat, presence or frequency penalty with top-k off",
    ("repeat_penalty", "presence_penalty", "frequency_penalty"),
    *_MEASURED["penalties"],
)


@dataclass(frozen=True)
class CostNote:
    """A slow setting, said for a person: show `text` beside the sliders in `fields`."""

    fields: tuple[str, ...]
    text: str
    extra_us: float


def penalties_cost(settings: SamplingSettings) -> bool:
    """True when llama.cpp's penalties sampler visits every token of the vocabulary: the
    chain has it and needs the whole row (`SamplingSettings.survivors` is None)."""
    return settings.uses_penalties and settings.survivors is None


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
    if s.survivors is None:
        return "top_k_large"
    return "default" if s.uses_penalties else "top_k"


def _penalty_us(n_vocab: int) -> float:
    return max(0.0, PENALTIES.us_at(n_vocab) - COSTS["full_dist"].us_at(n_vocab))


def estimate_us(settings: SamplingSettings, n_vocab: int) -> float:
    """Estimated µs per token of sampling with `settings` at `n_vocab` tokens."""
    key = classify(settings)
    extra = _penalty_us(n_vocab) if penalties_cost(settings) else 0.0
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
    if penalties_cost(settings):
        extra = _penalty_us(n_vocab)
        if extra >= slow_us:
            advice = " Turn on top-k, or set them to 1 and 0, to avoid it."
            notes.append(_note(PENALTIES.fields, PENALTIES.label, extra, n_vocab, advice))
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
