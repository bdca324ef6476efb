"""tests/bench/wakeup_cost.py stays runnable: its arguments, its waker, and its quick path
end to end (`hearth ask` on the starter model; no figure is judged here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench import wakeup_cost

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rounds", "0"], "must be 1 or more (got 0)"),
        (["--tokens", "many"], "'many' is not a whole number"),
        (["--model", "/no/such/model.gguf"], "--model /no/such/model.gguf: no such file"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_named(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        wakeup_cost.parse_args(args)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def voluntary_switches(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.MULTILINE)
    assert found is not None
    return int(found[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_the_waker_wakes_at_its_rate_and_is_gone_after() -> None:
    with wakeup_cost.waking(200, 20) as waker:
        assert waker is not None
        first = voluntary_switches(waker.pid)
        time.sleep(0.5)
        woke = voluntary_switches(waker.pid) - first
    assert 50 <= woke <= 150  # 100 at its rate; sleeps overshoot on a busy machine
    assert waker.returncode is not None  # ended with the block
    with wakeup_cost.waking(0, 0) as none:
        assert none is None


def test_the_quick_run_prints_every_setting(starter_model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("QT_QPA_PLATFORM", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.wakeup_cost", "--quick", "--model", str(starter_model)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"alone\s+decode \d+\.\d", out)
    lines = re.findall(
        r"wake-ups/s x +\d+ µs work  decode \d+\.\d .*vs alone \d\.\d{3} .*"
        r"decode lost per wake-up -?\d+ µs",
        out,
    )
    assert len(lines) == len(wakeup_cost.SETTINGS) - 1
