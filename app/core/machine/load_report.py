"""What llama.cpp says it allocated while loading a model, read from its log.

llama.cpp logs one line per buffer it allocates, for example::

    load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
    llama_context:        CPU  output buffer size =     0.19 MiB
    llama_kv_cache:        CPU KV buffer size =    45.00 MiB
    sched_reserve:        CPU compute buffer size =   102.51 MiB

`capture_buffers()` listens to the `llama.cpp` logger (where `app.core.logs` routes that
log) around a load and turns those lines into a `MeasuredBuffers`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.core.logs import llama_logger

MIB = 2**20
_PRINT_STEP_MIB = 0.01  # llama.cpp prints buffer sizes with two decimals

_BUFFER_LINE = re.compile(
    r"(?P<name>[\w.\-]+)\s+(?:(?P<kind>model|KV|compute|output)\s+)?buffer size\s*"
    r"(?P<op>=|is)\s*(?P<mib>\d+(?:\.\d+)?)\s*MiB"
)
_KV_TOTAL_LINE = re.compile(
    r"(?:KV self size|llama_kv_cache\w*: size)\s*=\s*(?P<mib>\d+(?:\.\d+)?)\s*MiB"
    r"(?:\s*\(\s*(?P<cells>\d+) cells)?"
)
_OFFLOADED_LINE = re.compile(r"offloaded (?P<done>\d+)/(?P<total>\d+) layers to GPU")
_KIND_FIELDS: dict[str | None, str] = {
    None: "model",  # older builds: "CPU buffer size" for weights
    "model": "model",
    "KV": "kv",
    "compute": "compute",
    "output": "output",
}


def _is_host_buffer(name: str) -> bool:
    """Whether a buffer of this name lives in RAM (CPU, CPU_Mapped, CUDA_Host, ...)."""
    return name.upper().startswith("CPU") or name.endswith("_Host")


@dataclass(frozen=True)
class MeasuredBuffers:
    """Buffer sizes llama.cpp reported, in bytes, keyed by buffer name ("CPU_Mapped", "CUDA0").

    Sizes come from lines printed in MiB with two decimals, so each one is exact only to
    about 5 KiB; a precise compute size printed when a context is freed replaces the
    rounded one when it agrees with it. `kv_cells` is the context llama.cpp allocated, and
    `offloaded_layers` its "offloaded n/N layers to GPU" (GPU builds only).
    """

    model: dict[str, int] = field(default_factory=dict)
    kv_cache: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: dict[str, int] = field(default_factory=dict)
    kv_cells: int | None = None
    offloaded_layers: tuple[int, int] | None = None

    @property
    def weights_total(self) -> int:
        """Bytes of model weights in every buffer."""
        return sum(self.model.values())

    @property
    def kv_total(self) -> int:
        """Bytes of KV cache on every device."""
        return sum(self.kv_cache.values())

    @property
    def compute_total(self) -> int:
        """Bytes of compute (scratch) buffers on every device."""
        return sum(self.compute.values())

    @property
    def output_total(self) -> int:
        """Bytes of the output (logits) buffer."""
        return sum(self.output.values())

    @property
    def total(self) -> int:
        """Everything reported."""
        return self.weights_total + self.kv_total + self.compute_total + self.output_total

    @property
    def device_bytes(self) -> int:
        """Bytes in accelerator memory (every buffer not in RAM)."""
        return sum(size for name, size in self._all() if not _is_host_buffer(name))

    @property
    def host_bytes(self) -> int:
        """Bytes in RAM, mapped model files included."""
        return sum(size for name, size in self._all() if _is_host_buffer(name))

    @property
    def found(self) -> bool:
        """Whether any buffer line was seen."""
        return bool(self.model or self.kv_cache or self.compute or self.output)

    def _all(self) -> Iterator[tuple[str, int]]:
        for part in (self.model, self.kv_cache, self.compute, self.output):
            yield from part.items()


def parse_buffer_lines(lines: Iterable[str]) -> MeasuredBuffers:
    """Read buffer sizes from llama.cpp log lines; other lines are ignored.

    A later line about the same buffer replaces an earlier one. The "KV self size" total of
    older builds stands in when no per-device KV line appears.
    """
    parts: dict[str, dict[str, int]] = {"model": {}, "kv": {}, "compute": {}, "output": {}}
    kv_total: int | None = None
    kv_cells: int | None = None
    offloaded: tuple[int, int] | None = None
    for line in lines:
        match = _BUFFER_LINE.search(line)
        if match is not None:
            target = parts[_KIND_FIELDS[match.group("kind")]]
            name = match.group("name")
            mib = float(match.group("mib"))
            if match.group("op") == "is":
                # printed when a context is freed, with four decimals: use it only to refine
                # the size this capture already saw, never a context from before it
                seen = target.get(name)
                if seen is not None and abs(seen / MIB - mib) <= _PRINT_STEP_MIB:
                    target[name] = round(mib * MIB)
                continue
            target[name] = round(mib * MIB)
            continue
        layers = _OFFLOADED_LINE.search(line)
        if layers is not None:
            offloaded = (int(layers.group("done")), int(layers.group("total")))
            continue
        total = _KV_TOTAL_LINE.search(line)
        if total is not None:
            kv_total = round(float(total.group("mib")) * MIB)
            if total.group("cells"):
                kv_cells = int(total.group("cells"))
    if not parts["kv"] and kv_total is not None:
        parts["kv"]["total"] = kv_total
    return MeasuredBuffers(
        model=parts["model"],
        kv_cache=parts["kv"],
        compute=parts["compute"],
        output=parts["output"],
        kv_cells=kv_cells,
        offloaded_layers=offloaded,
    )


class _LineCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "size" in message or "offloaded" in message:
            with self._lines_lock:
                self._lines.append(message)

    def lines(self) -> list[str]:
        with self._lines_lock:
            return list(self._lines)


class BufferCapture:
    """Collects llama.cpp's buffer lines while active; read them with `result()`."""

    def __init__(self) -> None:
        self._collector = _LineCollector()

    @property
    def lines(self) -> list[str]:
        """The buffer lines seen so far."""
        return self._collector.lines()

    def result(self) -> MeasuredBuffers:
        """The buffers reported so far."""
        return parse_buffer_lines(self._collector.lines())


@contextmanager
def capture_buffers() -> Iterator[BufferCapture]:
    """Record the buffers llama.cpp reports inside the `with` block (from any thread).

    The `llama.cpp` logger is let through at INFO level meanwhile, so its INFO lines also
    reach the log file's handler if that one accepts them.
    """
    capture = BufferCapture()
    previous_level = llama_logger.level
    if not llama_logger.isEnabledFor(logging.INFO):
        llama_logger.setLevel(logging.INFO)
    llama_logger.addHandler(capture._collector)
    try:
        yield capture
    finally:
        llama_logger.removeHandler(capture._collector)
        llama_logger.setLevel(previous_level)
