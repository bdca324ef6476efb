"""The load probe: a model that crashes llama.cpp ends a child process, never Hearth."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.errors import ModelFileError, ModelLoadError
from app.core.inference.engine import Engine
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_probe import checked_options
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.machine.load_verdicts import LoadVerdicts
from tests.gguf_factory import write_tiny_gguf
from tests.gguf_fuzz import write_crashing_gguf

CPU = LoadOptions(n_ctx=256, n_gpu_layers=0, n_threads=1)


def crashing_model(tmp_path: Path) -> Path:
    """A GGUF whose header Hearth accepts but whose integer embeddings make llama.cpp abort."""
    return write_crashing_gguf(tmp_path / "int-embeddings.gguf", "abort")


def test_a_model_that_aborts_llama_cpp_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = crashing_model(tmp_path)
    verdicts = LoadVerdicts(tmp_path / "cache")
    with pytest.raises(ModelLoadError) as caught:
        checked_options(path, CPU, verdicts)
    message = caught.value.message
    assert "int-embeddings.gguf" in message
    assert "crash" in message and "re-download" in message
    assert "abort" in message or "GGML_ASSERT" in message  # llama.cpp's own words
    verdict = verdicts.for_file(path)
    assert verdict is not None and verdict.status == "crashed"
    # The verdict is kept: the second time no child runs, and the answer is the same.
    mtime = verdicts.path.stat().st_mtime_ns
    with pytest.raises(ModelLoadError):
        checked_options(path, CPU, verdicts)
    assert verdicts.path.stat().st_mtime_ns == mtime


def test_a_good_model_passes_and_then_loads_and_generates(
    tmp_path: Path, starter_model: Path
) -> None:
    verdicts = LoadVerdicts(tmp_path / "cache")
    options, warnings = checked_options(starter_model, CPU, verdicts)
    assert warnings == []
    verdict = verdicts.for_file(starter_model)
    assert verdict is not None and verdict.loads and verdict.finite
    engine = Engine()
    try:
        engine.load(starter_model, options)
        events = list(
            engine.generate(
                [Message("user", "Hi")], SamplingSettings(temperature=0.0, max_tokens=4)
            )
        )
        assert events[-1].stats.completion_tokens > 0
    finally:
        engine.close()


def test_a_changed_file_is_probed_again(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    verdicts = LoadVerdicts(tmp_path / "cache")
    checked_options(path, CPU, verdicts)
    first = verdicts.for_file(path)
    assert first is not None and first.loads
    os.utime(path, ns=(0, 1))  # same bytes, another modification time: another file to us
    assert verdicts.for_file(path) is None
    checked_options(path, CPU, verdicts)
    assert verdicts.for_file(path) == first


def test_zero_layers_are_refused_by_the_header_before_any_child_runs(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "no-layers.gguf", n_layer=0)
    verdicts = LoadVerdicts(tmp_path / "cache")
    with pytest.raises(ModelFileError) as caught:
        checked_options(path, CPU, verdicts)
    message = caught.value.message
    assert "no-layers.gguf" in message and "llama.block_count = 0" in message
    assert "download it again" in message
    assert verdicts.for_file(path) is None  # refused before the probe: nothing was tried


@pytest.mark.parametrize("kind", ["segfault", "exception"])
def test_every_way_llama_cpp_dies_is_a_refusal_with_the_reason(tmp_path: Path, kind: str) -> None:
    path = write_crashing_gguf(tmp_path / f"{kind}.gguf", kind)
    verdicts = LoadVerdicts(tmp_path / "cache")
    with pytest.raises(ModelLoadError) as caught:
        checked_options(path, CPU, verdicts)
    expected = {"segfault": "segmentation fault", "exception": "unordered_map"}[kind]
    assert expected in caught.value.message
    assert "...." not in caught.value.message  # llama.cpp's progress dots are no reason
