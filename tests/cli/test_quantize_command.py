"""`hearth quantize` as a person runs it: real files, the real quantizer, exit statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.gguf_file import read_gguf_info
from app.core.units import format_bytes
from tests.gguf_factory import write_tiny_gguf

TINY_SHAPE = {"n_embd": 256, "n_ff": 512, "n_head": 4, "n_head_kv": 2}


def hearth(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HEARTH_HOME": str(home)},
        timeout=180,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_quantize_by_name_prints_sizes_memory_and_a_progress_bar(
    home: Path, tmp_path: Path
) -> None:
    models = home / "data" / "models"
    models.mkdir(parents=True)
    source = write_tiny_gguf(models / "tiny-chat-f16.gguf", dtype="f16", **TINY_SHAPE)

    result = hearth("quantize", "tiny-chat", "--to", "q4_k_m", "--threads", "2", home=home)

    assert result.returncode == 0, result.stderr
    output = models / "quantized" / "tiny-chat-Q4_K_M.gguf"
    assert read_gguf_info(output).quant == "Q4_K_M"
    out = result.stdout
    assert str(output) in out
    assert "predicted size" in out and "memory to run it: about" in out
    assert "4,096-token context" not in out  # the tiny model's own context is smaller
    assert "256-token context" in out
    sizes = f"size: {format_bytes(source.stat().st_size)} -> {format_bytes(output.stat().st_size)}"
    assert sizes in out and "of the original" in out
    assert "tensor 21/21" in result.stderr and "[####" in result.stderr
    assert "Traceback" not in result.stderr


def test_quantize_to_an_explicit_output(home: Path, tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf", dtype="f32", **TINY_SHAPE)
    output = tmp_path / "out" / "tiny-q8.gguf"
    output.parent.mkdir()

    result = hearth("quantize", str(source), "--to", "Q8_0", "-o", str(output), home=home)

    assert result.returncode == 0, result.stderr
    assert read_gguf_info(output).quant == "Q8_0"
    assert "Done in" in result.stdout


def test_requantizing_needs_the_flag(starter_model: Path, home: Path, tmp_path: Path) -> None:
    refused = hearth("quantize", str(starter_model), "--to", "Q4_0", home=home)

    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hearth: error:")
    assert "--allow-requantize" in lines[0]

    output = tmp_path / "starter-q4_0.gguf"
    allowed = hearth(
        "quantize",
        str(starter_model),
        "--to",
        "Q4_0",
        "--allow-requantize",
        "-o",
        str(output),
        home=home,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "warning:" in allowed.stderr and "already quantized" in allowed.stderr
    assert "tensor 272/272" in allowed.stderr
    assert read_gguf_info(output).quant == "Q4_0"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("missing.gguf", "--to", "Q4_0"), "does not exist"),
        (("no-such-model-name", "--to", "Q4_0"), "No model named"),
    ],
)
def test_errors_exit_1_with_one_line(args: tuple[str, ...], words: str, home: Path) -> None:
    result = hearth("quantize", *args, home=home)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("model.gguf", "--to", "Q9_9"),
        ("model.gguf",),
        ("model.gguf", "--to", "Q4_0", "--threads", "0"),
        ("--to", "Q4_0"),
    ],
)
def test_bad_flags_exit_2(args: tuple[str, ...], home: Path) -> None:
    result = hearth("quantize", *args, home=home)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_stops_the_quantizer_and_leaves_nothing_behind(
    starter_model: Path, home: Path, tmp_path: Path
) -> None:
    output = tmp_path / "interrupted.gguf"
    args = ["quantize", str(starter_model), "--to", "Q8_0", "--allow-requantize", "-o", str(output)]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "HEARTH_HOME": str(home)},
        start_new_session=True,
    )
    assert process.stderr is not None
    seen = b""
    while b"tensor " not in seen:
        piece = process.stderr.read(1)
        assert piece, f"quantize ended before any progress: {seen!r}"
        seen += piece
    quantizers = processes_in_group(process.pid, "spawn_main")
    assert len(quantizers) == 1  # the child running llama_model_quantize
    os.killpg(process.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group

    process.communicate(timeout=60)

    assert process.returncode == 130
    assert not output.exists()
    assert not output.with_name(output.name + ".partial").exists()
    assert not Path(f"/proc/{quantizers[0]}").exists()  # stopped and reaped by its parent


def processes_in_group(pgid: int, command_part: str) -> list[int]:
    """Ids of the running processes of a process group whose command line has `command_part`."""
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            group = int((folder / "stat").read_text().rsplit(")", 1)[1].split()[2])
            cmdline = (folder / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if group == pgid and command_part in cmdline:
            found.append(int(folder.name))
    return found
