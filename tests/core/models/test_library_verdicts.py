"""The library and the load probe: "fits" only once a file loaded, crashes listed with the
reason, values that make no sense shown as warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFValueType

from app.core.errors import ModelLoadError
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_probe import checked_options
from app.core.machine.load_verdicts import LoadVerdicts
from app.core.models.library import LibraryModel, MachineMemory, scan_library
from app.core.models.model_sources import source_roots
from app.core.paths import AppPaths, app_paths
from tests.gguf_factory import write_tiny_gguf
from tests.gguf_fuzz import set_kv, write_crashing_gguf

CPU = LoadOptions(n_ctx=256, n_gpu_layers=0, n_threads=1)
PLENTY = MachineMemory(ram_available=64 * 2**30)


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "hearth").ensure()


@pytest.fixture
def verdicts(tmp_path: Path) -> LoadVerdicts:
    return LoadVerdicts(tmp_path / "verdicts")


def scan(paths: AppPaths, verdicts: LoadVerdicts) -> dict[str, LibraryModel]:
    home = paths.models.parent / "home"
    home.mkdir(exist_ok=True)
    models = scan_library(
        paths,
        extra_folders=[],
        roots=source_roots(home, env={}, platform="linux"),
        machine=PLENTY,
        verdicts=verdicts,
    )
    return {m.path.name: m for m in models}


def test_fits_only_once_loaded_and_crashes_are_listed_with_the_reason(
    paths: AppPaths, verdicts: LoadVerdicts
) -> None:
    good = write_tiny_gguf(paths.models / "good.gguf")
    bad = write_crashing_gguf(paths.models / "bad.gguf", "abort")
    before = scan(paths, verdicts)
    assert before["good.gguf"].fit == before["bad.gguf"].fit == "untried"
    assert before["bad.gguf"].problem is None  # nobody knows yet

    checked_options(good, CPU, verdicts)
    with pytest.raises(ModelLoadError):
        checked_options(bad, CPU, verdicts)

    after = scan(paths, verdicts)
    assert after["good.gguf"].fit == "fits" and after["good.gguf"].problem is None
    crashed = after["bad.gguf"]
    assert crashed.fit == "unknown"
    assert crashed.problem is not None
    assert "bad.gguf makes llama.cpp crash" in crashed.problem and "GGML_ASSERT" in crashed.problem


def test_header_and_probe_warnings_are_shown(paths: AppPaths, verdicts: LoadVerdicts) -> None:
    edit = set_kv("llama.rope.freq_base", 0.0, GGUFValueType.FLOAT32)
    odd = write_tiny_gguf(paths.models / "rope-zero.gguf", edit=edit)
    (header_warning,) = scan(paths, verdicts)["rope-zero.gguf"].warnings
    assert "llama.rope.freq_base = 0.0" in header_warning

    _, load_warnings = checked_options(odd, CPU, verdicts)
    model = scan(paths, verdicts)["rope-zero.gguf"]  # headers from the cache this time
    assert model.warnings[0] == header_warning == load_warnings[0]
    assert "NaN or infinite" in model.warnings[1] == load_warnings[1]
    assert model.fit == "fits"  # it loads: nonsense, but nothing stops it


def test_values_that_would_crash_llama_cpp_are_problems_naming_the_key(
    paths: AppPaths, verdicts: LoadVerdicts
) -> None:
    write_tiny_gguf(paths.models / "no-layers.gguf", n_layer=0)
    model = scan(paths, verdicts)["no-layers.gguf"]
    assert model.problem is not None and "llama.block_count = 0" in model.problem
    assert model.fit == "unknown"
