"""tests/bench/gui_path.py stays runnable: its arguments, and its quick path end to end
(the real window and `hearth ask` on the starter model; no figure is judged here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import gui_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rounds", "0"], "must be 1 or more (got 0)"),
        (["--tokens", "many"], "'many' is not a whole number"),
        (["--model", "/no/such/model.gguf"], "--model /no/such/model.gguf: no such file"),
        (["--window", "wide"], "'wide': give the window's size as WxH, 400x300 or more"),
        (["--window", "300x200"], "'300x200': give the window's size as WxH"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_named(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        gui_path.parse_args(args)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_quick_is_one_short_round() -> None:
    args = gui_path.parse_args(["--quick", "--rounds", "9"])
    assert (args.rounds, args.tokens, args.long_tokens) == (1, 8, 16)
    assert gui_path.parse_args([]).rounds == 9


def test_the_quick_run_prints_every_figure_and_the_summary_rows(
    starter_model: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.tsv"
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.gui_path", "--quick", "--summary", str(summary)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"hearth ask --json\s+decode \d+\.\d", out)
    for variant in gui_path.VARIANTS:
        assert variant.name in out
    assert len(re.findall(r"vs ask: stats \d\.\d{3} \(", out)) == len(gui_path.VARIANTS)
    assert len(re.findall(r"GUI thread \d+ \(", out)) == len(gui_path.VARIANTS)
    assert len(re.findall(r"whole GUI process \d+ \(", out)) == len(gui_path.VARIANTS)
    host = re.findall(r"engine host CPU per token by thread: main \d+ \(.*hearth-sender", out)
    assert len(host) == len(gui_path.VARIANTS)
    woke = re.findall(
        r"wake-ups per chunk: GUI thread (\d+\.\d\d), inference worker (\d+\.\d\d), "
        r"host sender (\d+\.\d\d); llama\.cpp's threads preempted per token: "
        r"decode loop \d+\.\d\d, its helper \d+\.\d\d",
        out,
    )
    assert len(woke) == len(gui_path.VARIANTS)
    assert all(float(n) > 0 for counts in woke for n in counts)  # each thread woke, counted
    assert len(re.findall(r"event loop lateness max \d+\.\d ms", out)) == 2
    rows = summary.read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(gui_path.VARIANTS) + 2
    assert all(row.startswith(starter_model.name + "\t") for row in rows)
