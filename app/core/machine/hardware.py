"""What the machine offers: memory now free, memory in all, threads worth using, and
what llama.cpp was built with and sees at runtime (`machine_report`).

Every function here answers something and never raises; 0 bytes means "could not tell".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

_MEMINFO = Path("/proc/meminfo")
_SMT_THRESHOLD = 4  # above this many usable CPUs, assume two hardware threads per core


def available_memory() -> int:
    """Bytes of RAM that programs can use now without swapping; the total if unknown."""
    measured: int | None = None
    with contextlib.suppress(Exception):
        if sys.platform == "win32":
            measured = _windows_memory()[1]
        elif sys.platform == "darwin":
            measured = _macos_available()
        else:
            measured = _meminfo_bytes("MemAvailable") or _sysconf_bytes("SC_AVPHYS_PAGES")
    return measured if measured else total_memory()


def total_memory() -> int:
    """Bytes of physical RAM, 0 if unknown."""
    measured: int | None = None
    with contextlib.suppress(Exception):
        if sys.platform == "win32":
            measured = _windows_memory()[0]
        elif sys.platform == "darwin":
            measured = _sysctl("hw.memsize")
        else:
            measured = _meminfo_bytes("MemTotal")
    if not measured:
        with contextlib.suppress(Exception):
            measured = _sysconf_bytes("SC_PHYS_PAGES")
    return measured or 0


def default_threads() -> int:
    """Threads for llama.cpp: one per physical core, guessed from the usable CPUs.

    Generation is memory-bound and gains nothing from SMT siblings, so above four usable
    CPUs assume two hardware threads per core and use half.
    """
    cpus = _usable_cpus()
    return max(1, cpus // 2 if cpus > _SMT_THRESHOLD else cpus)


def spare_core(n_threads: int, gpu_layers: int, usable_cpus: int | None = None) -> bool:
    """Whether the CPU has room beside llama.cpp while it decodes.

    On a GPU the CPU waits during a decode. On the CPU, llama.cpp's threads spin at
    barriers: other work that takes one of their cores delays them all, so there is room
    only when a core is left over.
    """
    cpus = usable_cpus if usable_cpus is not None else _usable_cpus()
    return gpu_layers != 0 or cpus > n_threads


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _meminfo_bytes(field: str) -> int | None:
    """A field of /proc/meminfo (given in kB) in bytes, None if absent."""
    for line in _MEMINFO.read_text(encoding="ascii", errors="replace").splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0]) * 1024
    return None


def _sysconf_bytes(pages_name: str) -> int | None:
    if sys.platform == "win32":
        return None
    if pages_name not in os.sysconf_names or "SC_PAGE_SIZE" not in os.sysconf_names:
        return None
    pages = os.sysconf(pages_name)
    page_size = os.sysconf("SC_PAGE_SIZE")
    return pages * page_size if pages > 0 and page_size > 0 else None


if sys.platform == "win32":

    class _MemoryStatusEx(ctypes.Structure):
        _fields_ = (
            ("dwLength", ctypes.c_uint32),
            ("dwMemoryLoad", ctypes.c_uint32),
            ("ullTotalPhys", ctypes.c_uint64),
            ("ullAvailPhys", ctypes.c_uint64),
            ("ullTotalPageFile", ctypes.c_uint64),
            ("ullAvailPageFile", ctypes.c_uint64),
            ("ullTotalVirtual", ctypes.c_uint64),
            ("ullAvailVirtual", ctypes.c_uint64),
            ("ullAvailExtendedVirtual", ctypes.c_uint64),
        )

    def _windows_memory() -> tuple[int, int]:
        """(total, available) physical memory from GlobalMemoryStatusEx."""
        status = _MemoryStatusEx()
        status.dwLength = ctypes.sizeof(_MemoryStatusEx)
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return 0, 0
        return int(status.ullTotalPhys), int(status.ullAvailPhys)


if sys.platform == "darwin":

    def _sysctl(name: str) -> int | None:
        """An integer sysctl value, None if the name is unknown."""
        libc = ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True)
        value = ctypes.c_uint64(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        result = libc.sysctlbyname(
            name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)
        )
        return int(value.value) if result == 0 else None

    def _macos_available() -> int | None:
        """Free pages plus file cache and purgeable pages the system can reclaim at once."""
        page_size = _sysctl("hw.pagesize")
        free = _sysctl("vm.page_free_count")
        if not page_size or free is None:
            return None
        reclaimable = sum(
            _sysctl(name) or 0
            for name in (
                "vm.page_speculative_count",
                "vm.page_pageable_external_count",
                "vm.page_purgeable_count",
            )
        )
        return (free + reclaimable) * page_size


# ----- what llama.cpp was built with and sees -----

UNKNOWN: Final = "unknown"
DeviceKind = Literal["CPU", "GPU", "IGPU", "ACCEL", "META", "unknown"]

# enum ggml_backend_dev_type. Builds from before integrated GPUs got their own type (no
# ggml_version() either) numbered ACCEL 2.
_DEVICE_KINDS: tuple[DeviceKind, ...] = ("CPU", "GPU", "IGPU", "ACCEL", "META")
_OLD_DEVICE_KINDS: tuple[DeviceKind, ...] = ("CPU", "GPU", "ACCEL")
_GPU_KINDS = frozenset({"GPU", "IGPU"})
_SMI_TIMEOUT_S = 5
_GGML_FILES: Final = {  # libggml, then libggml-base: candidate file names per platform
    "linux": (("libggml.so",), ("libggml-base.so",)),
    "darwin": (("libggml.dylib", "libggml.so"), ("libggml-base.dylib", "libggml-base.so")),
    "win32": (("ggml.dll", "libggml.dll"), ("ggml-base.dll", "libggml-base.dll")),
}


@dataclass(frozen=True)
class DeviceInfo:
    """One device llama.cpp can run on, as ggml's backend registry reports it.

    Memory is in bytes; 0 means the backend did not say.
    """

    name: str
    description: str
    kind: DeviceKind
    backend: str
    memory_free: int
    memory_total: int

    @property
    def is_gpu(self) -> bool:
        """Whether llama.cpp can offload layers to it (a dedicated or integrated GPU)."""
        return self.kind in _GPU_KINDS

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "description": self.description,
            "type": self.kind,
            "backend": self.backend,
            "memory_free": self.memory_free,
            "memory_total": self.memory_total,
        }


@dataclass(frozen=True)
class MachineReport:
    """What this machine offers llama.cpp and what this build of llama.cpp can use.

    `None` in a yes/no field, and "unknown" in a text field, mean this build could not be
    asked (a missing symbol or library); `devices` is then empty and `devices_known` False.
    """

    llama_cpp_python: str
    ggml_version: str
    ggml_commit: str
    backends: tuple[str, ...]
    devices: tuple[DeviceInfo, ...]
    devices_known: bool
    gpu_offload: bool | None
    mmap: bool | None
    mlock: bool | None
    max_devices: int | None
    cpu_features: tuple[str, ...]
    system_info: str
    ram_total: int
    ram_available: int
    threads: int
    platform: str
    os_gpus: tuple[str, ...] = ()

    @property
    def gpus(self) -> tuple[DeviceInfo, ...]:
        """The devices llama.cpp would offload to, in its order (tensor split and main GPU
        index into this): dedicated GPUs, or the integrated ones when there are none."""
        return offload_devices(self.devices)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; unknown values are "unknown"."""

        def known(value: object) -> object:
            return UNKNOWN if value is None else value

        return {
            "llama_cpp_python": self.llama_cpp_python,
            "ggml_version": self.ggml_version,
            "ggml_commit": self.ggml_commit,
            "backends": list(self.backends),
            "devices": [device.to_dict() for device in self.devices]
            if self.devices_known
            else UNKNOWN,
            "gpu_offload": known(self.gpu_offload),
            "mmap": known(self.mmap),
            "mlock": known(self.mlock),
            "max_devices": known(self.max_devices),
            "cpu_features": list(self.cpu_features),
            "system_info": self.system_info,
            "ram_total": self.ram_total,
            "ram_available": self.ram_available,
            "threads": self.threads,
            "platform": self.platform,
            "os_gpus": list(self.os_gpus),
        }


def offload_devices(devices: Sequence[DeviceInfo]) -> tuple[DeviceInfo, ...]:
    """The devices llama.cpp offloads layers to: GPUs, else integrated GPUs."""
    dedicated = tuple(d for d in devices if d.kind == "GPU")
    return dedicated or tuple(d for d in devices if d.kind == "IGPU")


def machine_report() -> MachineReport:
    """Ask llama.cpp, ggml and the OS what this machine and build offer. Never raises."""
    import llama_cpp

    _init_backend()
    ggml = _GgmlLibrary.open()
    devices = ggml.devices() if ggml is not None else None
    system_info = _call_text(getattr(llama_cpp, "llama_print_system_info", None))
    sections = parse_system_info(system_info) if system_info != UNKNOWN else {}
    cpu = sections.get("CPU", {})
    return MachineReport(
        llama_cpp_python=str(getattr(llama_cpp, "__version__", UNKNOWN)),
        ggml_version=ggml.text("ggml_version") if ggml is not None else UNKNOWN,
        ggml_commit=ggml.text("ggml_commit") if ggml is not None else UNKNOWN,
        backends=ggml.backends() if ggml is not None else (),
        devices=devices or (),
        devices_known=devices is not None,
        gpu_offload=_call_bool(getattr(llama_cpp, "llama_supports_gpu_offload", None)),
        mmap=_call_bool(getattr(llama_cpp, "llama_supports_mmap", None)),
        mlock=_call_bool(getattr(llama_cpp, "llama_supports_mlock", None)),
        max_devices=_call_int(getattr(llama_cpp, "llama_max_devices", None)),
        cpu_features=tuple(name for name, value in cpu.items() if value == "1"),
        system_info=system_info,
        ram_total=total_memory(),
        ram_available=available_memory(),
        threads=default_threads(),
        platform=f"{platform.system()} {platform.machine()}".strip() or UNKNOWN,
        os_gpus=os_visible_gpus(),
    )


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (False if it cannot say)."""
    import llama_cpp

    return bool(_call_bool(getattr(llama_cpp, "llama_supports_gpu_offload", None)))


def gpu_free_memory() -> list[int]:
    """Free bytes of each device llama.cpp would offload to, in its order; [] for none."""
    _init_backend()
    ggml = _GgmlLibrary.open()
    devices = ggml.devices() if ggml is not None else None
    return [device.memory_free for device in offload_devices(devices or ())]


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """Split `llama_print_system_info()` into sections of settings.

    "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 |" becomes
    {"CUDA": {"ARCHS": "890", "USE_GRAPHS": "1"}, "CPU": {"SSE3": "1", "AVX2": "1"}}.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = sections.setdefault("", {})
    for piece in text.split("|"):
        section, colon, rest = piece.partition(":")
        if colon and "=" not in section:
            current = sections.setdefault(section.strip(), {})
            piece = rest
        key, equals, value = piece.partition("=")
        if equals and key.strip():
            current[key.strip()] = value.strip()
    if not sections[""]:
        del sections[""]
    return sections


def os_visible_gpus() -> tuple[str, ...]:
    """GPUs the operating system shows, whatever llama.cpp was built with.

    NVIDIA GPUs by `nvidia-smi`, AMD ones by `rocm-smi`, and the GPU of Apple Silicon.
    """
    found: list[str] = []
    if sys.platform == "darwin" and platform.machine() == "arm64":
        found.append("Apple Silicon GPU (Metal)")
    nvidia = shutil.which("nvidia-smi")
    if nvidia:
        names = _command_lines([nvidia, "--query-gpu=name", "--format=csv,noheader"])
        found.extend(f"NVIDIA {name}" if "NVIDIA" not in name else name for name in names)
        if not names:
            found.append("NVIDIA GPU (nvidia-smi found)")
    if shutil.which("rocm-smi"):
        found.append("AMD GPU (rocm-smi found)")
    return tuple(found)


def _command_lines(command: list[str]) -> list[str]:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_SMI_TIMEOUT_S, check=False
        )
        if result.returncode == 0:
            return [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return []


def _init_backend() -> None:
    """Let llama.cpp register its backends (idempotent), with its log routed."""
    with contextlib.suppress(Exception):
        from app.core.logs import route_llama_log

        route_llama_log()
        import llama_cpp

        llama_cpp.llama_backend_init()


def _call_text(function: Callable[[], Any] | None) -> str:
    if function is None:
        return UNKNOWN
    with contextlib.suppress(Exception):
        raw = function()
        if isinstance(raw, bytes):
            return raw.decode("utf-8", errors="replace").strip()
        if isinstance(raw, str):
            return raw.strip()
    return UNKNOWN


def _call_bool(function: Callable[[], Any] | None) -> bool | None:
    if function is None:
        return None
    with contextlib.suppress(Exception):
        return bool(function())
    return None


def _call_int(function: Callable[[], Any] | None) -> int | None:
    if function is None:
        return None
    with contextlib.suppress(Exception):
        return int(function())
    return None


class _GgmlLibrary:
    """ggml's device registry, declared with ctypes on the libraries llama-cpp-python ships.

    llama-cpp-python binds none of the `ggml_backend_dev_*` functions; the ones used here
    have kept their C signatures since the registry appeared. A missing symbol makes the
    answers that need it unknown.
    """

    def __init__(self, libraries: list[ctypes.CDLL]) -> None:
        self._libraries = libraries
        self._ptr = ctypes.c_void_p
        self._size = ctypes.c_size_t
        has_version = self._function("ggml_version", ctypes.c_char_p, []) is not None
        self._kinds = _DEVICE_KINDS if has_version else _OLD_DEVICE_KINDS

    @classmethod
    def open(cls) -> _GgmlLibrary | None:
        """The bundled ggml libraries, or None if they cannot be found or loaded."""
        with contextlib.suppress(Exception):
            folder = _llama_lib_folder()
            key = "linux" if sys.platform.startswith(("linux", "freebsd")) else sys.platform
            loaded: list[ctypes.CDLL] = []
            for candidates in _GGML_FILES.get(key, _GGML_FILES["linux"]):
                for file_name in candidates:
                    path = folder / file_name
                    if path.exists():
                        with contextlib.suppress(OSError):
                            loaded.append(ctypes.CDLL(str(path)))
                            break
            return cls(loaded) if loaded else None
        return None

    def _function(self, name: str, restype: Any, argtypes: list[Any]) -> Any | None:
        for library in self._libraries:
            function = getattr(library, name, None)
            if function is not None:
                function.restype = restype
                function.argtypes = argtypes
                return function
        return None

    def text(self, name: str) -> str:
        """A `const char * f(void)` answer, such as ggml_version."""
        return _call_text(self._function(name, ctypes.c_char_p, []))

    def backends(self) -> tuple[str, ...]:
        """Names of the registered backends ("CPU", "CUDA", "Metal", ...)."""
        count = self._function("ggml_backend_reg_count", self._size, [])
        get = self._function("ggml_backend_reg_get", self._ptr, [self._size])
        name = self._function("ggml_backend_reg_name", ctypes.c_char_p, [self._ptr])
        if count is None or get is None or name is None:
            return ()
        with contextlib.suppress(Exception):
            return tuple(_decode(name(get(i))) for i in range(int(count())))
        return ()

    def devices(self) -> tuple[DeviceInfo, ...] | None:
        """Every registered device, or None if the registry cannot be read."""
        count = self._function("ggml_backend_dev_count", self._size, [])
        get = self._function("ggml_backend_dev_get", self._ptr, [self._size])
        if count is None or get is None:
            return None
        name = self._function("ggml_backend_dev_name", ctypes.c_char_p, [self._ptr])
        description = self._function("ggml_backend_dev_description", ctypes.c_char_p, [self._ptr])
        kind = self._function("ggml_backend_dev_type", ctypes.c_int, [self._ptr])
        size_p = ctypes.POINTER(ctypes.c_size_t)
        memory = self._function("ggml_backend_dev_memory", None, [self._ptr, size_p, size_p])
        reg = self._function("ggml_backend_dev_backend_reg", self._ptr, [self._ptr])
        reg_name = self._function("ggml_backend_reg_name", ctypes.c_char_p, [self._ptr])
        found: list[DeviceInfo] = []
        with contextlib.suppress(Exception):
            for index in range(int(count())):
                device = get(index)
                if not device:
                    continue
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                if memory is not None:
                    memory(device, ctypes.byref(free), ctypes.byref(total))
                backend = UNKNOWN
                if reg is not None and reg_name is not None:
                    registry = reg(device)
                    backend = _decode(reg_name(registry)) if registry else UNKNOWN
                found.append(
                    DeviceInfo(
                        name=_decode(name(device)) if name is not None else UNKNOWN,
                        description=_decode(description(device))
                        if description is not None
                        else UNKNOWN,
                        kind=self._kind(kind(device)) if kind is not None else UNKNOWN,
                        backend=backend,
                        memory_free=int(free.value),
                        memory_total=int(total.value),
                    )
                )
            return tuple(found)
        return None

    def _kind(self, value: int) -> DeviceKind:
        return self._kinds[value] if 0 <= value < len(self._kinds) else UNKNOWN


def _llama_lib_folder() -> Path:
    """Where llama-cpp-python loaded libllama from (LLAMA_CPP_LIB_PATH or its lib folder)."""
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    base = getattr(bindings, "_base_path", None)
    if base is not None:
        return Path(base)
    return Path(llama_cpp.__file__).parent / "lib"


def _decode(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return UNKNOWN if raw is None else str(raw)
