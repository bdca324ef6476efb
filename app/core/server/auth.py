"""API keys: the bind rule, checking a request, and the key Hearth generates and keeps."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from app.core.errors import HearthError

KEY_FILE_NAME = "server_api_key"
KEY_PREFIX = "hearth-"


class ServerConfigError(HearthError):
    """A server option that cannot be used (no key for a public bind, an unreadable file)."""


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_key_file(path: Path) -> str:
    """The key in `path` (first line, stripped).

    Raises:
        ServerConfigError: The file cannot be read or is empty.
    """
    try:
        key = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise ServerConfigError(
            f"Cannot read the API key file {path} ({exc.strerror or exc}).", path=path
        ) from exc
    if not key or not key[0].strip():
        raise ServerConfigError(f"The API key file {path} is empty; put the key on its first line.")
    return key[0].strip()


def stored_key(config_dir: Path) -> tuple[str, Path, bool]:
    """Hearth's own server key: (key, file, created now). Created with owner-only access.

    Raises:
        ServerConfigError: The file cannot be read or written.
    """
    path = config_dir / KEY_FILE_NAME
    if path.exists():
        return read_key_file(path), path, False
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(key + "\n")
    except OSError as exc:
        raise ServerConfigError(
            f"Cannot store the API key in {path} ({exc.strerror or exc}).", path=path
        ) from exc
    return key, path, True


def key_matches(header: str | None, key: str) -> bool:
    """Whether an Authorization header carries `key` as a Bearer token (constant time)."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), key.encode())
