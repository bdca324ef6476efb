"""How the library tab words the fit verdict, load crashes and warnings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.core.models.library import LibraryModel
from app.ui.models.library_tab import FIT_TIPS, details_html, fit_text

MODEL = LibraryModel(
    path=Path("/models/tiny.gguf"),
    files=(Path("/models/tiny.gguf"),),
    name="Tiny",
    architecture="llama",
    n_params=1000,
    quant="F32",
    size_bytes=4000,
    context_length=256,
    has_chat_template=False,
    is_projector=False,
    source="hearth",
    deletable=False,
    repo_id=None,
    fit="untried",
    memory_needed=10_000,
    problem=None,
)


def test_a_model_never_loaded_is_not_tried_yet() -> None:
    assert fit_text(MODEL) == "Not tried yet"
    assert "has not loaded it" in FIT_TIPS["untried"]
    assert fit_text(replace(MODEL, fit="fits")) == "Fits"


def test_warnings_mark_the_fit_and_fill_the_details() -> None:
    odd = replace(MODEL, fit="fits", warnings=("tiny.gguf has llama.rope.freq_base = 0.0: <x>",))
    assert fit_text(odd) == "Fits ⚠"
    assert "Warning: tiny.gguf has llama.rope.freq_base = 0.0: &lt;x&gt;" in details_html(odd)


def test_a_file_that_crashed_a_load_is_broken_with_the_reason() -> None:
    crashed = replace(MODEL, fit="unknown", problem="tiny.gguf makes llama.cpp crash (abort)")
    assert fit_text(crashed) == "Broken"
    assert "makes llama.cpp crash (abort)" in details_html(crashed)
