"""Byte and parameter counts written for people."""

from __future__ import annotations


def format_params(n: int, unknown: str = "") -> str:
    """A parameter count for people: "135M", "1.7B" (`unknown` when 0 or less)."""
    if n <= 0:
        return unknown
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M"


def format_bytes(n: int) -> str:
    """Format a byte count for people, in binary units: "512 B", "98.4 MiB", "3.2 GiB"."""
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1023.95:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"
