"""Names ending in .gguf that are not model files are listed with the reason, never opened;
damaged headers are described in one printable line."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.gguf_file import read_gguf_info, shown
from app.core.models.library import LibraryModel, MachineMemory, scan_library
from app.core.models.model_sources import source_roots
from app.core.paths import app_paths
from tests.gguf_factory import write_tiny_gguf


def test_folders_fifos_devices_and_links_are_listed_with_the_reason(tmp_path: Path) -> None:
    paths = app_paths(tmp_path / "hearth").ensure()
    models = paths.models
    (models / "folder.gguf").mkdir()
    write_tiny_gguf(models / "folder.gguf" / "inside.gguf", name="Inside")
    os.mkfifo(models / "pipe.gguf")
    (models / "loop.gguf").symlink_to("loop.gguf")
    (models / "gone.gguf").symlink_to(tmp_path / "nowhere.gguf")
    (models / "device.gguf").symlink_to("/dev/null")
    write_tiny_gguf(models / "fine.gguf", name="Fine")

    found: list[list[LibraryModel]] = []
    roots = source_roots(tmp_path / "home", env={}, platform="linux")
    scan = threading.Thread(
        target=lambda: found.append(
            scan_library(paths, roots=roots, machine=MachineMemory(ram_available=2**36))
        ),
        daemon=True,
    )
    scan.start()
    scan.join(30)
    assert not scan.is_alive(), "the scan blocked (did it open the FIFO?)"
    problems = {m.path.name: m.problem for m in found[0]}
    assert problems == {
        "folder.gguf": "'folder.gguf' is a folder, not a model file.",
        "inside.gguf": None,
        "pipe.gguf": "'pipe.gguf' is a named pipe (FIFO), not a model file; Hearth does not "
        "read it.",
        "loop.gguf": "'loop.gguf' is a symbolic link that leads back to itself (a loop).",
        "gone.gguf": f"'gone.gguf' is a link to '{tmp_path / 'nowhere.gguf'}', which does not "
        "exist.",
        "device.gguf": "'device.gguf' is a device, not a model file.",
        "fine.gguf": None,
    }
    assert all(m.fit == "unknown" for m in found[0] if m.problem)


def _gguf_string(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def test_a_damaged_header_message_escapes_binary_bytes(tmp_path: Path) -> None:
    key = b"\x00\n\x1b[31m\xff\xfe\nkey\r\n"
    entry = _gguf_string(key) + struct.pack("<I", 0) + b"\x01"  # uint8 value
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + entry + entry
    path = tmp_path / "binary-key.gguf"
    path.write_bytes(body + b"\x00" * 64)
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    message = str(caught.value)
    assert "appears twice" in message
    assert "\\x00\\n\\x1b[31m\\ufffd\\ufffd\\nkey\\r\\n" in message
    assert message.isprintable()


def test_shown_limits_and_escapes() -> None:
    assert shown("a\tb") == "a\\tb"
    assert shown("x" * 100, limit=5) == "xxxxx\u2026"
    assert shown("naïve 東京") == "naïve 東京"
