"""Real small file systems for storage-fault tests: a tiny tmpfs to fill, remounted read-only.

Mounting needs root (the test machines run as root). Where it is refused, the tests that
need it are skipped with the reason, never faked.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of `size` on `folder` for the block; skip the test if it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        _run("umount", "-l", str(folder))


def remount(folder: Path, *, read_only: bool) -> None:
    """Make the tmpfs mounted on `folder` read-only (even root cannot write) or writable."""
    done = _run("mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(folder))
    assert done.returncode == 0, done.stderr


def fill_disk(folder: Path, name: str = "filler") -> Path:
    """Write a file on `folder`'s disk until it is full; delete it to give the space back."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
        with contextlib.suppress(OSError):  # the last few hundred bytes
            while True:
                os.write(fd, b"\0" * 64)
    finally:
        os.close(fd)
    return path
