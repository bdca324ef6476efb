"""`hearth ask` with a model file that crashes llama.cpp: one line naming the file, a
non-zero exit, no traceback and no core dump: one real subprocess per way llama.cpp dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gguf import GGUFValueType

from tests.gguf_factory import write_tiny_gguf
from tests.gguf_fuzz import CRASHERS, set_kv, write_crashing_gguf

FAST = ["--temperature", "0", "--max-tokens", "2", "--threads", "1", "--ctx", "256"]
CRASH_WORDS = {
    "abort": "GGML_ASSERT",
    "segfault": "segmentation fault",
    "exception": "unordered_map",
}


def ask(model: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HEARTH_HOME": str(tmp_path / "home"),
        "HEARTH_PROBE_CACHE": str(tmp_path / "probe"),  # tried afresh, not from the cache
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "ask", "--model", str(model), *FAST, "hi"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def assert_one_clean_error(result: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    assert result.returncode == 1, result.stderr  # an error, not a signal
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hearth: error:")
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("core*")), "a core file was left behind"
    return lines[0]


@pytest.mark.parametrize("kind", sorted(CRASHERS))
def test_a_model_that_crashes_llama_cpp_is_one_line_naming_the_file(
    tmp_path: Path, kind: str
) -> None:
    model = write_crashing_gguf(tmp_path / f"crash-{kind}.gguf", kind)
    line = assert_one_clean_error(ask(model, tmp_path), tmp_path)
    assert f"crash-{kind}.gguf makes llama.cpp crash" in line
    assert CRASH_WORDS[kind] in line


def test_a_value_that_would_crash_llama_cpp_is_refused_by_key(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "no-layers.gguf", n_layer=0)
    line = assert_one_clean_error(ask(model, tmp_path), tmp_path)
    assert "no-layers.gguf" in line and "llama.block_count = 0" in line


def test_nonsense_that_loads_is_a_warning_and_the_reply_still_comes(tmp_path: Path) -> None:
    edit = set_kv("llama.rope.freq_base", 0.0, GGUFValueType.FLOAT32)
    model = write_tiny_gguf(tmp_path / "rope-zero.gguf", edit=edit)
    result = ask(model, tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("hearth: warning:")]
    assert any("llama.rope.freq_base = 0.0" in w for w in warnings), result.stderr
    assert any("NaN or infinite" in w for w in warnings), result.stderr
    assert "Traceback" not in result.stderr
