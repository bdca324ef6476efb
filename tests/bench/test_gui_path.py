"""tests/bench/gui_path.py stays runnable: its arguments, and its quick path end to end
(the real window and `hearth ask` on the starter model; no figure is judged here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
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
    waited = re.findall(
        r"llama\.cpp's threads waited for a core \d+ \(.*\) µs per token, in hearth ask "
        r"\d+ \(.*\); the difference is -?\d+\.\d\d% \(.*\) of a decode step",
        out,
    )
    assert len(waited) == len(gui_path.VARIANTS)
    assert len(re.findall(r"event loop lateness max \d+\.\d ms", out)) == 2
    assert len(re.findall(r"; full garbage collections \d+", out)) == 2
    settled = re.search(
        r"a full garbage collection after them .*: \d+\.\d ms, walking (\d+) objects; "
        r"(\d+) frozen once the model loaded",
        out,
    )
    assert settled is not None
    assert int(settled[2]) > int(settled[1])  # most of the heap is the start-up's
    rows = summary.read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(gui_path.VARIANTS) + 2
    assert all(row.startswith(starter_model.name + "\t") for row in rows)


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="needs Linux schedstat")
def test_thread_sched_reads_the_time_each_thread_waited_for_a_core() -> None:
    """Two busy processes held to one core: each runs about half the time and waits for the
    core the other half; `thread_sched` reads both halves."""
    spin = "import os, time\nos.sched_setaffinity(0, {0})\nt = time.time()\n"
    spin += "while time.time() - t < 5: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        deadline = time.monotonic() + 4
        while True:  # until both have run a while (each then has waited about as long)
            readings = [gui_path.thread_sched(p.pid).get("main", (0.0, 0.0)) for p in procs]
            if min(cpu for cpu, _ in readings) > 0.3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for cpu, wait in readings:
        assert cpu > 0.2
        assert wait > 0.2  # the other one had the core
