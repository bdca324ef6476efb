"""`hearth serve` as other programs meet it: a real subprocess on loopback, the real model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.inference.load_options import LoadOptions

CTX = "2048"


@dataclass
class Served:
    """A running `hearth serve`: its base URL, model id, key and what it printed."""

    url: str
    model: str
    key: str | None
    banner: str
    process: subprocess.Popen[str]


def start_serve(home: Path, model: Path, *extra: str) -> Served:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    with open(home.parent / f"{home.name}-stderr.txt", "w") as log:  # the child keeps it
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--model",
                str(model),
                "--port",
                "0",
                "--threads",
                "1",
                "--ctx",
                CTX,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"hearth serve exited: {''.join(lines)}")
        lines.append(line)
        if line.startswith("Press Ctrl+C"):
            break
    banner = "".join(lines)
    found = re.search(r"^Serving (\S+) at (\S+)$", banner, re.M)
    assert found, banner
    key = re.search(r"Bearer (\S+)'", banner)
    return Served(found.group(2), found.group(1), key.group(1) if key else None, banner, process)


def stop_serve(served: Served) -> str:
    """Ctrl+C, as a person would; return the rest of what it printed."""
    served.process.send_signal(signal.SIGINT)
    out, _ = served.process.communicate(timeout=60)
    assert served.process.returncode == 0, out
    return out


@pytest.fixture(scope="package")
def served(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`hearth serve` without a key."""
    server = start_serve(tmp_path_factory.mktemp("home-open"), starter_model)
    yield server
    assert "Stopping" in stop_serve(server)


@pytest.fixture(scope="package")
def served_with_key(
    starter_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`hearth serve --api-key-file`."""
    home = tmp_path_factory.mktemp("home-key")
    key_file = home.parent / "key.txt"
    key_file.write_text("s3cret-key\n")
    server = start_serve(home, starter_model, "--api-key-file", str(key_file))
    yield server
    stop_serve(server)


@pytest.fixture(scope="package")
def served_parallel(
    starter_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`hearth serve --parallel 4`: replies batched in one context."""
    server = start_serve(tmp_path_factory.mktemp("home-parallel"), starter_model, "--parallel", "4")
    yield server
    stop_serve(server)


@pytest.fixture(params=["one-by-one", "parallel"])
def either(request: pytest.FixtureRequest) -> Served:
    """Each server kind in turn: one reply at a time, and four batched."""
    name = "served" if request.param == "one-by-one" else "served_parallel"
    server: Served = request.getfixturevalue(name)
    return server


def probed(model: Path, options: LoadOptions) -> LoadOptions:
    """`options` after the crash probe, as `hearth serve` loads (no AMX where it crashes)."""
    from app.core.inference.load_probe import checked_options, probe_cache_dir
    from app.core.machine.load_verdicts import LoadVerdicts

    verdicts = LoadVerdicts(probe_cache_dir(model.parent / "probe"))
    checked, _ = checked_options(model, options, verdicts)
    return checked
