"""Quantizing real models with llama.cpp's quantizer in a child process; results load and chat."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.gguf_file import read_gguf_info
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.models.provenance import origin_of
from app.core.models.quantize import (
    QUANT_TARGETS,
    QuantizeCancelled,
    QuantizeControl,
    QuantizeError,
    QuantizePlan,
    QuantizeProgress,
    default_output,
    partial_path,
    plan_quantize,
    run_quantize,
)
from app.core.paths import AppPaths, app_paths
from tests.gguf_factory import write_tiny_gguf, write_truncated_copy

# Rows of 256 elements (n_embd, n_ff) fit every K-quant block, so no tensor falls back.
TINY_SHAPE = {"n_embd": 256, "n_ff": 512, "n_head": 4, "n_head_kv": 2}
TINY_TENSORS = 3 + 2 * 9  # token_embd, output_norm, output + 9 per block, 2 blocks
PREDICTION_TOLERANCE = 0.01  # measured: within 32 bytes on these files, exact on the starter


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    return {
        dtype: write_tiny_gguf(folder / f"tiny-{dtype}.gguf", dtype=dtype, **TINY_SHAPE)
        for dtype in ("f32", "f16")
    }


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "home").ensure()


def generate_tokens(model: Path, n_tokens: int = 4) -> GenerationDone:
    """Load `model` with the real engine and generate up to `n_tokens` tokens."""
    engine = Engine()
    engine.load(model, LoadOptions(n_ctx=256))
    try:
        settings = SamplingSettings(seed=1, max_tokens=n_tokens)
        events = list(engine.generate([Message("user", "hi")], settings))
    finally:
        engine.close()
    done = events[-1]
    assert isinstance(done, GenerationDone)
    return done


def assert_no_leftovers(plan: QuantizePlan) -> None:
    assert not partial_path(plan.output).exists()
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("target", QUANT_TARGETS)
def test_f16_model_quantizes_to_every_target_and_still_generates(
    target: str, tiny_sources: dict[str, Path], paths: AppPaths
) -> None:
    plan = plan_quantize(paths, tiny_sources["f16"], target)
    assert plan.output == paths.models / "quantized" / f"tiny-{target}.gguf"
    assert plan.source_quant == "F16" and not plan.requantize and plan.warning is None
    seen: list[QuantizeProgress] = []

    result = run_quantize(plan, progress=seen.append, threads=2)

    assert [p.tensor_index for p in seen] == list(range(1, TINY_TENSORS + 1))
    assert {p.tensor_count for p in seen} == {TINY_TENSORS}
    assert result.output == plan.output and result.size_bytes == plan.output.stat().st_size
    assert abs(plan.predicted_size - result.size_bytes) <= PREDICTION_TOLERANCE * result.size_bytes
    assert result.size_bytes < plan.source_size
    assert read_gguf_info(result.output).quant == target
    origin = origin_of(paths.models, result.output)
    assert origin is not None and origin.kind == "quantize" and origin.quant == target
    assert origin.source == str(tiny_sources["f16"])
    assert_no_leftovers(plan)
    assert (
        generate_tokens(result.output).stats.completion_tokens >= 1
    )  # random weights may end early


@pytest.mark.parametrize("target", ["Q8_0", "Q4_K_M"])
def test_f32_model_quantizes_and_still_generates(
    target: str, tiny_sources: dict[str, Path], paths: AppPaths
) -> None:
    plan = plan_quantize(paths, tiny_sources["f32"], target)
    result = run_quantize(plan)

    assert abs(plan.predicted_size - result.size_bytes) <= PREDICTION_TOLERANCE * result.size_bytes
    assert result.size_bytes < plan.source_size / 3
    assert read_gguf_info(result.output).quant == target
    assert (
        generate_tokens(result.output).stats.completion_tokens >= 1
    )  # random weights may end early


def test_starter_model_needs_requantize_permission(starter_model: Path, paths: AppPaths) -> None:
    with pytest.raises(QuantizeError) as err:
        plan_quantize(paths, starter_model, "Q8_0")
    message = str(err.value)
    assert "already quantized (Q4_1)" in message and "--allow-requantize" in message
    assert "quality" in message


def test_requantized_starter_model_chats(starter_model: Path, paths: AppPaths) -> None:
    plan = plan_quantize(paths, starter_model, "Q8_0", allow_requantize=True)
    assert plan.requantize and plan.source_quant == "Q4_1"
    assert plan.warning is not None and "already quantized" in plan.warning
    assert plan.output.name == "SmolLM2-135M-Instruct-Q8_0.gguf"

    result = run_quantize(plan)

    # llama.cpp's own size for this mix (token_embd kept Q8_0, the rest Q4_1 -> Q8_0).
    assert abs(plan.predicted_size - result.size_bytes) <= PREDICTION_TOLERANCE * result.size_bytes
    assert read_gguf_info(result.output).quant == "Q8_0"
    engine = Engine()
    engine.load(result.output, LoadOptions(n_ctx=512))
    try:
        settings = SamplingSettings(temperature=0.0, max_tokens=12)
        events = list(engine.generate([Message("user", "Say hello in one word.")], settings))
    finally:
        engine.close()
    done = events[-1]
    assert isinstance(done, GenerationDone)
    assert done.stats.completion_tokens > 0 and done.text.strip()


def test_cancel_kills_the_child_and_removes_the_partial_file(
    starter_model: Path, paths: AppPaths
) -> None:
    plan = plan_quantize(paths, starter_model, "Q8_0", allow_requantize=True)
    control = QuantizeControl()
    seen: list[QuantizeProgress] = []

    def cancel_at_first(progress: QuantizeProgress) -> None:
        seen.append(progress)
        control.cancel()

    with pytest.raises(QuantizeCancelled):
        run_quantize(plan, progress=cancel_at_first, control=control)

    assert len(seen) == 1 and seen[0].tensor_count == 272
    assert not plan.output.exists()
    assert_no_leftovers(plan)
    assert origin_of(paths.models, plan.output) is None


def test_a_killed_child_is_a_clear_error(starter_model: Path, paths: AppPaths) -> None:
    plan = plan_quantize(paths, starter_model, "Q8_0", allow_requantize=True)

    def kill_the_quantizer(_progress: QuantizeProgress) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)

    with pytest.raises(QuantizeError) as err:
        run_quantize(plan, progress=kill_the_quantizer)

    assert "killed (SIGKILL)" in str(err.value) and "memory" in str(err.value)
    assert not plan.output.exists()
    assert_no_leftovers(plan)


def test_llama_cpp_failure_quotes_its_error(tmp_path: Path, paths: AppPaths) -> None:
    source = write_tiny_gguf(tmp_path / "changing-f16.gguf", dtype="f16", **TINY_SHAPE)
    plan = plan_quantize(paths, source, "Q4_0")
    source.write_bytes(b"not a model any more" * 100)  # replaced between plan and run

    with pytest.raises(QuantizeError) as err:
        run_quantize(plan)

    message = str(err.value)
    assert "changing-f16.gguf" in message and "llama.cpp said:" in message
    assert "failed to" in message
    assert not plan.output.exists()
    assert_no_leftovers(plan)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_damaged_source_is_refused_before_any_child_starts(
    damage: str, tiny_sources: dict[str, Path], tmp_path: Path, paths: AppPaths
) -> None:
    source = tmp_path / f"{damage}.gguf"
    if damage == "truncated":
        write_truncated_copy(tiny_sources["f16"], source, 0.5)
    elif damage == "garbage":
        source.write_bytes(bytes(range(256)) * 64)

    with pytest.raises(ModelFileError) as err:
        plan_quantize(paths, source, "Q4_K_M")

    assert source.name in str(err.value)
    assert multiprocessing.active_children() == []
    assert not (paths.models / "quantized").exists()


def test_too_little_disk_space_is_refused(tiny_sources: dict[str, Path], paths: AppPaths) -> None:
    asked: list[Path] = []

    def nearly_full(folder: Path) -> int:
        asked.append(folder)
        return 10 * 2**20

    with pytest.raises(QuantizeError) as err:
        plan_quantize(paths, tiny_sources["f16"], "Q8_0", free_space=nearly_full)

    assert "Not enough disk space" in str(err.value) and "10.0 MiB" in str(err.value)
    assert asked == [paths.models]  # quantized/ does not exist yet: its parent's disk
    plan = plan_quantize(paths, tiny_sources["f16"], "Q8_0", free_space=lambda _: 2**40)
    assert plan.predicted_size > 0


def test_plan_refusals_explain_what_to_do(
    tiny_sources: dict[str, Path], tmp_path: Path, paths: AppPaths
) -> None:
    source = tiny_sources["f16"]

    def refusal(target: str = "Q4_0", **kwargs: object) -> str:
        with pytest.raises(QuantizeError) as err:
            plan_quantize(paths, source, target, **kwargs)  # type: ignore[arg-type]
        return str(err.value)

    unknown = refusal("Q9_X")
    assert "Q9_X" in unknown and all(target in unknown for target in QUANT_TARGETS)
    existing = tmp_path / "exists.gguf"
    existing.write_bytes(b"x")
    assert "already exists" in refusal(output=existing)
    assert "does not exist" in refusal(output=tmp_path / "no" / "such" / "out.gguf")
    assert "must end in .gguf" in refusal(output=tmp_path / "out.bin")

    q8 = run_quantize(plan_quantize(paths, source, "Q8_0")).output
    with pytest.raises(QuantizeError, match="already Q8_0"):
        plan_quantize(paths, q8, "Q8_0", allow_requantize=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_unwritable_output_folder_is_refused(
    tiny_sources: dict[str, Path], tmp_path: Path, paths: AppPaths
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(QuantizeError, match="not allowed to write"):
            plan_quantize(paths, tiny_sources["f16"], "Q4_0", output=locked / "out.gguf")
    finally:
        locked.chmod(0o700)


def test_output_outside_the_models_folder_is_not_recorded(
    tiny_sources: dict[str, Path], tmp_path: Path, paths: AppPaths
) -> None:
    output = tmp_path / "elsewhere" / "mine.gguf"
    output.parent.mkdir()
    plan = plan_quantize(paths, tiny_sources["f16"], "q4_0", output=output)
    assert plan.target == "Q4_0"

    result = run_quantize(plan)

    assert result.output == output and output.is_file()
    assert not (paths.models / "provenance.json").exists()


def test_predicted_memory_uses_the_predicted_weights(starter_model: Path, paths: AppPaths) -> None:
    small = plan_quantize(paths, starter_model, "Q2_K", allow_requantize=True)
    large = plan_quantize(paths, starter_model, "Q8_0", allow_requantize=True)

    assert small.memory_context == 4096
    assert large.predicted_memory - small.predicted_memory == pytest.approx(
        large.predicted_size - small.predicted_size, rel=0.01
    )
    assert small.predicted_memory > small.predicted_size


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("SmolLM2-135M-Instruct.Q4_1", "SmolLM2-135M-Instruct-Q4_K_M.gguf"),
        ("llama-3.2-1b-instruct-f16", "llama-3.2-1b-instruct-Q4_K_M.gguf"),
        ("Qwen2.5-0.5B.BF16", "Qwen2.5-0.5B-Q4_K_M.gguf"),
        ("model_q8_0", "model-Q4_K_M.gguf"),
        ("plain", "plain-Q4_K_M.gguf"),
    ],
)
def test_default_output_name_drops_the_source_quant_tag(
    stem: str, expected: str, paths: AppPaths
) -> None:
    output = default_output(paths, Path(f"/somewhere/{stem}.gguf"), "Q4_K_M")
    assert output == paths.models / "quantized" / expected


def test_result_is_moved_into_place_only_when_complete(
    tiny_sources: dict[str, Path], paths: AppPaths
) -> None:
    plan = plan_quantize(paths, tiny_sources["f16"], "Q4_K_S")
    seen_partial: list[bool] = []

    def look(_progress: QuantizeProgress) -> None:
        seen_partial.append(partial_path(plan.output).exists() and not plan.output.exists())

    run_quantize(plan, progress=look)

    assert seen_partial and all(seen_partial)
    assert plan.output.is_file() and not partial_path(plan.output).exists()
