"""What the machine offers: memory now free, memory in all, threads worth using.

Every function here answers something and never raises; 0 bytes means "could not tell".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

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
