"""A conversation's KV-cache state, saved so switching back does not re-read its history.

A snapshot is tagged with the llama.cpp build and the model file it came from; a snapshot
from another build or model is discarded rather than loaded.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAGIC = b"HKV1"


@functools.cache
def llama_build_tag() -> str:
    """Identifies this llama.cpp build: its version and what it was compiled for (two
    builds of one version, with and without AMX say, are different builds)."""
    import llama_cpp  # here, not at the top: importing snapshots must not load llama.cpp

    features = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    digest = hashlib.sha256(features.encode()).hexdigest()[:12]
    return f"llama-cpp-python {llama_cpp.__version__} ({digest})"


def model_key(path: Path) -> str:
    """Identifies one model file's exact contents cheaply (path, size, mtime)."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


@dataclass(frozen=True)
class KVSnapshot:
    """The tokens in sequence 0 of the KV cache and llama.cpp's serialized state for them."""

    tokens: tuple[int, ...]
    state: bytes
    build: str
    model: str
    n_ctx: int

    def matches(self, build: str, model: str, n_ctx: int) -> bool:
        """True when this snapshot can be loaded into that build, model and context size."""
        return (self.build, self.model) == (build, model) and self.n_ctx <= n_ctx

    def save(self, path: Path) -> None:
        """Write to `path` atomically."""
        header = json.dumps(
            {
                "tokens": list(self.tokens),
                "build": self.build,
                "model": self.model,
                "n_ctx": self.n_ctx,
            }
        ).encode()
        tmp = path.with_suffix(path.suffix + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header + self.state)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> KVSnapshot | None:
        """Read a snapshot file; None when it is missing or unreadable."""
        try:
            blob = path.read_bytes()
            if blob[:4] != _MAGIC:
                return None
            (size,) = struct.unpack("<Q", blob[4:12])
            header = json.loads(blob[12 : 12 + size])
            return cls(
                tokens=tuple(int(t) for t in header["tokens"]),
                state=blob[12 + size :],
                build=str(header["build"]),
                model=str(header["model"]),
                n_ctx=int(header["n_ctx"]),
            )
        except (OSError, ValueError, KeyError, struct.error):
            return None


MiB = 1 << 20
MIN_SNAPSHOT_BUDGET = 64 * MiB
MAX_SNAPSHOT_BUDGET = 2048 * MiB


def snapshot_budget(available_ram: int | None = None) -> int:
    """Bytes of RAM the in-memory KV snapshots may take on this machine.

    A quarter of the RAM available now, at most 2 GiB and at least 64 MiB.

    Args:
        available_ram: Bytes of available RAM; None to measure it now.
    """
    if available_ram is None:
        from app.core.machine.hardware import available_memory

        available_ram = available_memory()
    return max(MIN_SNAPSHOT_BUDGET, min(MAX_SNAPSHOT_BUDGET, available_ram // 4))


def read_sequence_state(ctx: Any, seq: int = 0) -> bytes:
    """The KV cache of one sequence of a llama.cpp context, as bytes."""
    import llama_cpp

    size = int(llama_cpp.llama_state_seq_get_size(ctx, seq))
    buf = (ctypes.c_uint8 * max(size, 1))()
    written = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq))
    return bytes(buf)[:written]


def write_sequence_state(ctx: Any, state: bytes, seq: int = 0) -> bool:
    """Load bytes from `read_sequence_state` into a sequence; False if llama.cpp refuses."""
    import llama_cpp

    data = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
    return int(llama_cpp.llama_state_seq_set_data(ctx, data, len(state), seq)) != 0
