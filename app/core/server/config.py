"""How the API server listens and what it allows: plain values, importable without the
web framework (the app's window reads them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""Largest request body, in bytes."""


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and what it allows.

    Attributes:
        host: The address to bind (127.0.0.1 unless told; others need `api_key`).
        port: The TCP port (0 = any free one).
        api_key: The Bearer key /v1 requests need, or None for none.
        cors_origins: Origins a browser may call from; empty = CORS off.
        max_body_bytes: Largest request body.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
