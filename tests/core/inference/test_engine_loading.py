"""Loading: bad files never reach llama.cpp, cancel works, tiny models use the fallback format."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.errors import (
    InsufficientMemoryError,
    InvalidSettingError,
    LoadCancelled,
    ModelFileError,
    ModelLoadError,
)
from app.core.inference.engine import Engine
from app.core.inference.events import StopReason
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.machine.hardware import total_memory
from tests.gguf_factory import write_sparse_huge_gguf, write_tiny_gguf, write_truncated_copy


def bad_files(tmp_path: Path, starter_model: Path) -> dict[str, Path]:
    (tmp_path / "folder.gguf").mkdir()
    (tmp_path / "random.gguf").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    (tmp_path / "wrongmagic.gguf").write_bytes(b"GGML" + b"\0" * 4096)
    return {
        "missing": tmp_path / "missing.gguf",
        "directory": tmp_path / "folder.gguf",
        "random bytes": tmp_path / "random.gguf",
        "not a gguf": tmp_path / "notes.txt",
        "wrong magic": tmp_path / "wrongmagic.gguf",
        "truncated": write_truncated_copy(starter_model, tmp_path / "cut.gguf", 0.6),
    }


@pytest.mark.parametrize(
    "case", ["missing", "directory", "random bytes", "not a gguf", "wrong magic", "truncated"]
)
def test_bad_files_get_a_specific_error_naming_the_file(
    case: str, tmp_path: Path, starter_model: Path
) -> None:
    path = bad_files(tmp_path, starter_model)[case]
    engine = Engine()
    with pytest.raises(ModelFileError) as err:
        engine.load(path)
    assert path.name in str(err.value)
    assert engine.loaded is None


def test_model_too_large_for_memory_is_refused_before_loading(tmp_path: Path) -> None:
    huge = write_sparse_huge_gguf(tmp_path / "huge.gguf", tensor_bytes=2 * total_memory())
    with pytest.raises(InsufficientMemoryError) as err:
        Engine().load(huge)
    assert err.value.needed > err.value.available
    assert "free" in str(err.value)


def test_llama_cpp_refusal_is_quoted_not_a_crash(tmp_path: Path) -> None:
    broken = write_tiny_gguf(tmp_path / "broken.gguf", omit_tensors=("output_norm.weight",))
    engine = Engine()
    with pytest.raises(ModelLoadError) as err:
        engine.load(broken, LoadOptions(n_ctx=256))
    message = str(err.value)
    assert "broken.gguf" in message and "output_norm" in message
    assert engine.loaded is None
    # The process and the engine are fine afterwards.
    engine.load(write_tiny_gguf(tmp_path / "ok.gguf"), LoadOptions(n_ctx=256))
    engine.close()


def test_failed_load_keeps_the_previous_model(tmp_path: Path) -> None:
    engine = Engine()
    engine.load(write_tiny_gguf(tmp_path / "tiny.gguf"), LoadOptions(n_ctx=256))
    with pytest.raises(ModelFileError):
        engine.load(tmp_path / "missing.gguf")
    assert engine.loaded is not None
    engine.close()


def test_tiny_model_without_template_uses_the_fallback(tmp_path: Path) -> None:
    engine = Engine()
    loaded = engine.load(
        write_tiny_gguf(tmp_path / "tiny.gguf", dtype="f16"), LoadOptions(n_ctx=256)
    )
    try:
        assert loaded.template_is_fallback
        assert loaded.info.architecture == "llama" and loaded.n_ctx == 256
        events = list(
            engine.generate([Message("user", "hi")], SamplingSettings(seed=1, max_tokens=6))
        )
        done = events[-1]
        assert done.stats.completion_tokens == 6  # type: ignore[union-attr]
        assert done.stats.stop_reason is StopReason.MAX_TOKENS  # type: ignore[union-attr]
    finally:
        engine.close()


def test_load_reports_progress_and_can_be_cancelled(starter_model: Path) -> None:
    seen: list[float] = []
    engine = Engine()
    engine.load(starter_model, LoadOptions(n_ctx=512), progress=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)
    engine.close()

    cancel = threading.Event()

    def cancel_at_first_progress(_fraction: float) -> None:
        cancel.set()

    with pytest.raises(LoadCancelled):
        engine.load(
            starter_model, LoadOptions(n_ctx=512), progress=cancel_at_first_progress, cancel=cancel
        )
    assert engine.loaded is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_ctx": -1}, "context length"),
        ({"type_k": "q3_x"}, "KV cache type"),
        ({"type_v": "q8_0", "flash_attn": "off"}, "needs flash attention"),
        ({"n_threads": 0}, "threads"),
        ({"main_gpu": -1}, "main GPU"),
        ({"tensor_split": (0.5, -0.5)}, "tensor split"),
        ({"tensor_split": (0.0, 0.0)}, "tensor split"),
        ({"tensor_split": (1.0,) * 17}, "tensor split"),
    ],
)
def test_bad_load_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        LoadOptions(**options)  # type: ignore[arg-type]


def test_llama_cpp_log_goes_to_python_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger="llama.cpp"):
        engine = Engine()
        engine.load(write_tiny_gguf(tmp_path / "tiny.gguf"), LoadOptions(n_ctx=256))
        engine.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "llama.cpp"]
    assert any("llama_model_loader" in line for line in lines)
    assert all("\n" not in line and line.strip() for line in lines)
