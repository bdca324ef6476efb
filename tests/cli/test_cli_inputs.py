"""Hostile input to the `hearth` command: numeric flag edges, bytes that are not UTF-8,
chat templates that fail. One line on stderr each, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.cli.common import machine_threads
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf

EDGES = ("0", "-1", "1000000", str(2**70), "nan", "inf", "-inf", "1e400", "", "x")
ALWAYS_BAD = {str(2**70), "nan", "inf", "-inf", "1e400", "", "x"}
FLAG_COMMANDS = {
    "--ctx": ["ask"],
    "--gpu-layers": ["ask"],
    "--threads": ["ask"],
    "--temperature": ["ask"],
    "--top-k": ["ask"],
    "--top-p": ["ask"],
    "--min-p": ["ask"],
    "--typical-p": ["ask"],
    "--repeat-penalty": ["ask"],
    "--repeat-last-n": ["ask"],
    "--presence-penalty": ["ask"],
    "--frequency-penalty": ["ask"],
    "--mirostat": ["ask"],
    "--mirostat-tau": ["ask"],
    "--mirostat-eta": ["ask"],
    "--seed": ["ask"],
    "--max-tokens": ["ask"],
    "--limit": ["search", "q"],
    "--conversation": ["export"],
}
FAST = ["--temperature", "0", "--max-tokens", "4", "--threads", "1", "--ctx", "256"]


@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize("flag", sorted(FLAG_COMMANDS))
def test_numeric_flag_edges_give_one_line(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = FLAG_COMMANDS[flag]
    argv = ["--data-dir", str(tmp_path), *command, f"{flag}={value}"]
    if command[0] == "ask":
        argv += ["--model", str(tmp_path / "missing.gguf"), "hi"]
    if command[0] == "search":  # a valid limit would search: point it at nothing
        os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    try:
        code = main(argv)
    finally:
        os.environ.pop("HF_ENDPOINT", None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if value in ALWAYS_BAD:
        assert code == 2, err
        assert err.startswith("hearth: error: ") and err.count("\n") == 1, err
        assert flag in err or "must" in err, err
    else:  # valid values go on to fail at the missing model (or the offline Hub)
        assert code in (0, 1, 2), err
        assert err == "" or err.startswith("hearth: "), err


def test_threads_are_bounded_by_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_many = machine_threads() + 1
    for argv in (["ask", "hi"], ["quantize", "m.gguf", "--to", "Q4_0"]):
        code = main(["--data-dir", str(tmp_path), *argv, "--threads", str(too_many)])
        err = capsys.readouterr().err
        assert code == 2
        low = 1 if argv[0] == "quantize" else 0  # the quantizer has no "0 = default"
        assert f"argument --threads: {too_many} is out of range: use {low} to" in err
        assert f"this machine has {os.cpu_count()} CPU threads" in err


def run_hearth(
    *args: str | bytes, home: Path, stdin: bytes | None = None, lang: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    if lang is not None:
        env.update(LANG=lang, LC_ALL=lang)
        env.pop("PYTHONUTF8", None)
        env.pop("PYTHONIOENCODING", None)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("lang", [None, "C"])
def test_bytes_that_are_not_utf8_are_replaced_and_said_once(
    tmp_path: Path, lang: str | None
) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", chat_template=CHATML_TEMPLATE)
    model = ["--model", str(tiny), *FAST]
    ask = run_hearth(
        "ask", *model, "--system", b"Be caf\xe9.", b"caf\xe9 ol\xe9?", home=tmp_path, lang=lang
    )
    assert ask.returncode == 0, ask.stderr.decode()
    assert b"Traceback" not in ask.stderr
    assert ask.stderr.count(b"not UTF-8") == 1

    chat = run_hearth("chat", *model, stdin=b"caf\xe9\n\xff\xfe hello\n", home=tmp_path, lang=lang)
    assert chat.returncode == 0, chat.stderr.decode()
    assert b"Traceback" not in chat.stderr
    assert chat.stderr.count(b"not UTF-8") == 1


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ 1/0 }}", "division by zero"),
        ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursed too deeply"),
        ("{% for m in messages %}{% endfor %}", "rendered nothing"),
    ],
)
def test_a_failing_template_is_one_line_in_ask(tmp_path: Path, template: str, problem: str) -> None:
    model = write_tiny_gguf(tmp_path / "bad-template.gguf", chat_template=template)
    result = run_hearth("ask", "--model", str(model), *FAST, "hi", home=tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("hearth: error:")]
    assert problem in line and "bad-template.gguf" in line and "--plain-template" in line
    plain = run_hearth("ask", "--model", str(model), *FAST, "--plain-template", "hi", home=tmp_path)
    assert plain.returncode == 0, plain.stderr.decode()
