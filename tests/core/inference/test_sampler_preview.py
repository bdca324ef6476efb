"""The numpy sampler preview agrees with llama.cpp's own samplers on the same candidates."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
import pytest

from app.core.inference.sampler_preview import preview
from app.core.inference.sampling import SamplingSettings


def llama_cpp_survivors(logits: np.ndarray, s: SamplingSettings) -> dict[int, float]:
    """Run llama.cpp's top-k/typical/top-p/min-p/temp on the candidates; id -> probability."""
    chain: Any = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda sampler: llama_cpp.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    if s.top_k > 0:
        add(llama_cpp.llama_sampler_init_top_k(s.top_k))
    if s.typical_p < 1.0:
        add(llama_cpp.llama_sampler_init_typical(s.typical_p, 1))
    if s.top_p < 1.0:
        add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
    if s.min_p > 0.0:
        add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(s.temperature))
    n = logits.size
    data = (llama_cpp.llama_token_data * n)(
        *[llama_cpp.llama_token_data(i, float(v), 0.0) for i, v in enumerate(logits)]
    )
    array = llama_cpp.llama_token_data_array(data, n, -1, False)
    try:
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        kept = [(array.data[i].id, array.data[i].logit) for i in range(array.size)]
    finally:
        llama_cpp.llama_sampler_free(chain)
    kept_logits = np.array([lg for _, lg in kept], dtype=np.float64)
    probs = np.exp(kept_logits - kept_logits.max())
    probs /= probs.sum()
    return {tid: float(p) for (tid, _), p in zip(kept, probs, strict=True)}


SETTINGS = [
    SamplingSettings(temperature=0.7, top_k=5, top_p=1.0, min_p=0.0),
    SamplingSettings(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0),
    SamplingSettings(temperature=1.3, top_k=0, top_p=1.0, min_p=0.1),
    SamplingSettings(temperature=0.9, top_k=0, top_p=1.0, min_p=0.0, typical_p=0.6),
    SamplingSettings(temperature=0.8, top_k=20, top_p=0.95, min_p=0.05, typical_p=0.9),
    SamplingSettings(temperature=2.0, top_k=3, top_p=0.5, min_p=0.2),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preview_matches_llama_cpp(settings: SamplingSettings, seed: int) -> None:
    logits = np.random.default_rng(seed).normal(0.0, 2.5, 40).astype(np.float32)
    expected = llama_cpp_survivors(logits, settings)
    result = preview(logits, settings)
    assert result is not None
    assert set(np.flatnonzero(result.kept)) == set(expected)
    for token, p in expected.items():
        assert result.probs[token] == pytest.approx(p, rel=1e-4, abs=1e-7)
    assert result.probs.sum() == pytest.approx(1.0)


def test_greedy_and_mirostat() -> None:
    logits = np.array([1.0, 3.0, 2.0])
    greedy = preview(logits, SamplingSettings(temperature=0.0))
    assert greedy is not None and greedy.greedy
    assert list(greedy.probs) == [0.0, 1.0, 0.0]
    assert preview(logits, SamplingSettings(mirostat=2)) is None


def test_higher_temperature_flattens_the_distribution() -> None:
    logits = np.array([4.0, 2.0, 1.0, 0.0])
    cold, hot = (
        preview(logits, SamplingSettings(temperature=t, top_k=0, top_p=1.0, min_p=0.0))
        for t in (0.5, 1.5)
    )
    assert cold is not None and hot is not None
    assert cold.probs[0] > hot.probs[0] and cold.probs[3] < hot.probs[3]
