"""Saved connections to OpenAI-compatible servers: name, base URL, CA bundle, API key.

The list lives in `connections.json` in the config folder. API keys never go there, nor
into the database or the log: they are kept in the OS keychain through `keyring` where the
system has one, else in `connection-keys.json` beside it, readable by its owner only
(0600). A headless Linux without a Secret Service is the usual case for the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import ConnectionSettingsError, HearthError
from app.core.inference.remote_http import Endpoint, normalise_url
from app.core.inference.remote_server import ServerFacts, fetch_server_facts

log = logging.getLogger(__name__)

CONNECTIONS_FILE = "connections.json"
KEYS_FILE = "connection-keys.json"
KEYRING_SERVICE = "hearth-connections"
PRIVACY_NOTE = (
    "Chats sent to a remote server leave this machine: the server's operator can read them."
)
"""Said wherever a person adds or picks a server (the CLI, Model → Connections…)."""
_NAME = re.compile(r"^[\w .@:+-]{1,64}$")


@dataclass(frozen=True)
class Connection:
    """A saved server: how it is named, where it is, and whether it has a key."""

    name: str
    base_url: str
    ca_bundle: Path | None = None
    has_key: bool = False


def _keychain() -> Any | None:
    """The OS keychain backend, or None where `keyring` has no usable one."""
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception as exc:  # a broken keyring install must not stop Hearth
        log.info("no keychain: %s", type(exc).__name__)
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return backend


class ConnectionStore:
    """The saved connections of one config folder.

    `keychain` True/False forces where keys go (tests); None uses the OS keychain when
    `keyring` finds one.
    """

    def __init__(self, config_dir: Path, *, keychain: bool | None = None) -> None:
        self._dir = config_dir
        self._keychain = _keychain() if keychain is not False else None
        if keychain is True and self._keychain is None:
            raise ConnectionSettingsError("No OS keychain is available to keep API keys.")

    @property
    def path(self) -> Path:
        """The connections file."""
        return self._dir / CONNECTIONS_FILE

    @property
    def keys_path(self) -> Path:
        """The owner-only key file used when there is no keychain."""
        return self._dir / KEYS_FILE

    @property
    def key_storage(self) -> str:
        """Where keys are kept, for people ("the system keychain" or the file)."""
        if self._keychain is not None:
            return f"the system keychain ({type(self._keychain).__name__})"
        return f"{self.keys_path} (readable by you only)"

    def all(self) -> list[Connection]:
        """Every saved connection, in the order added."""
        return [self._connection(entry) for entry in self._read()]

    def get(self, name: str) -> Connection:
        """The connection called `name`.

        Raises:
            ConnectionSettingsError: There is none.
        """
        for connection in self.all():
            if connection.name == name:
                return connection
        known = ", ".join(c.name for c in self.all()) or "none yet"
        raise ConnectionSettingsError(
            f"There is no connection named {name!r} (saved: {known}). Add it in "
            "Model → Connections…"
        )

    def add(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        ca_bundle: Path | None = None,
    ) -> Connection:
        """Save a connection (replacing one of the same name) and its key.

        Raises:
            ConnectionSettingsError: A bad name, URL or CA bundle; the file cannot be
                written.
        """
        name = name.strip()
        if not _NAME.match(name):
            raise ConnectionSettingsError(
                f"{name!r} is not a usable connection name: use 1 to 64 letters, digits, "
                "spaces or . @ : + - _"
            )
        url = normalise_url(base_url)
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise ConnectionSettingsError(
                f"The CA bundle {ca_bundle} does not exist. Choose the server's CA "
                "certificate file (.pem or .crt).",
                path=ca_bundle,
            )
        entries = [e for e in self._read() if e.get("name") != name]
        entries.append(
            {"name": name, "base_url": url, "ca_bundle": str(ca_bundle) if ca_bundle else None}
        )
        self._write_json(self.path, entries, private=False)
        self._set_key(name, api_key.strip() if api_key and api_key.strip() else None)
        return self.get(name)

    def remove(self, name: str) -> None:
        """Forget a connection and its key (nothing happens if there is none)."""
        entries = [e for e in self._read() if e.get("name") != name]
        self._write_json(self.path, entries, private=False)
        self._set_key(name, None)

    def api_key(self, name: str) -> str | None:
        """The key saved for `name`, or None."""
        if self._keychain is not None:
            try:
                value = self._keychain.get_password(KEYRING_SERVICE, name)
                return str(value) if value else None
            except Exception as exc:
                raise ConnectionSettingsError(
                    f"The system keychain could not be read for {name!r} ({exc}). Unlock it "
                    "and try again."
                ) from None
        value = self._read_keys().get(name)
        return value if isinstance(value, str) and value else None

    def endpoint(self, name: str) -> Endpoint:
        """The `Endpoint` of a saved connection, its key included."""
        connection = self.get(name)
        return Endpoint(
            connection.base_url,
            api_key=self.api_key(name),
            ca_bundle=connection.ca_bundle,
            name=connection.name,
        )

    # ----- files -----

    def _connection(self, entry: dict[str, Any]) -> Connection:
        name = str(entry.get("name", ""))
        ca = entry.get("ca_bundle")
        has_key = self._has_key(name)
        return Connection(name, str(entry.get("base_url", "")), Path(ca) if ca else None, has_key)

    def _has_key(self, name: str) -> bool:
        try:
            return self.api_key(name) is not None
        except ConnectionSettingsError:
            return False

    def _read(self) -> list[dict[str, Any]]:
        data = self._load(self.path)
        if not isinstance(data, list):
            return []
        return [e for e in data if isinstance(e, dict) and isinstance(e.get("name"), str)]

    def _read_keys(self) -> dict[str, Any]:
        data = self._load(self.keys_path)
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _load(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConnectionSettingsError(
                f"{path} cannot be read ({exc}). Fix or delete it, then add the connections again.",
                path=path,
            ) from None

    def _set_key(self, name: str, key: str | None) -> None:
        if self._keychain is not None:
            try:
                if key is not None:
                    self._keychain.set_password(KEYRING_SERVICE, name, key)
                elif self._keychain.get_password(KEYRING_SERVICE, name) is not None:
                    self._keychain.delete_password(KEYRING_SERVICE, name)
            except Exception as exc:
                raise ConnectionSettingsError(
                    f"The system keychain refused the key for {name!r} ({exc})."
                ) from None
            return
        keys = self._read_keys()
        if key is None and name not in keys:
            return
        if key is None:
            keys.pop(name, None)
        else:
            keys[name] = key
        self._write_json(self.keys_path, keys, private=True)

    def _write_json(self, path: Path, data: Any, *, private: bool) -> None:
        temp = path.with_name(path.name + ".tmp")
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            with suppress(FileNotFoundError):
                temp.unlink()
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
            if private:
                temp.chmod(0o600)
            os.replace(temp, path)
        except OSError as exc:
            raise ConnectionSettingsError(
                f"Cannot save {path} ({exc.strerror or exc}).", path=path
            ) from None


def check_endpoint(endpoint: Endpoint) -> ServerFacts:
    """The "Test" button: list the endpoint's models (`/v1/models`) and time the round trip.

    Raises:
        RemoteError: (subclasses) why the server could not be used.
    """
    return fetch_server_facts(endpoint)


@dataclass(frozen=True)
class ConnectionListing:
    """One saved connection's models, or why they could not be listed."""

    connection: Connection
    facts: ServerFacts | None = None
    error: str = ""


def list_connections(store: ConnectionStore) -> list[ConnectionListing]:
    """Every saved connection with its models (`/v1/models`), one server at a time; a server
    that cannot be used gets its message instead. Network: call it off the GUI thread."""
    listings: list[ConnectionListing] = []
    for connection in store.all():
        try:
            facts = check_endpoint(store.endpoint(connection.name))
        except HearthError as exc:
            listings.append(ConnectionListing(connection, error=exc.message))
        else:
            listings.append(ConnectionListing(connection, facts))
    return listings


def _saved_key(store: ConnectionStore, name: str) -> str | None:
    return store.api_key(name) if any(c.name == name for c in store.all()) else None


def endpoint_from_form(
    store: ConnectionStore, name: str, base_url: str, api_key: str, ca_bundle: str
) -> Endpoint:
    """The endpoint a person typed in Model → Connections… (a blank key: the saved one).

    Raises:
        ConnectionSettingsError: A bad URL, or a CA bundle that does not exist.
    """
    ca = Path(ca_bundle).expanduser() if ca_bundle.strip() else None
    if ca is not None and not ca.is_file():
        raise ConnectionSettingsError(
            f"The CA bundle {ca} does not exist. Choose the server's CA certificate file "
            "(.pem or .crt), or leave the field empty.",
            path=ca,
        )
    key = api_key.strip() or _saved_key(store, name.strip())
    return Endpoint(base_url, api_key=key, ca_bundle=ca, name=name.strip())


def save_from_form(
    store: ConnectionStore, name: str, base_url: str, api_key: str, ca_bundle: str
) -> Connection:
    """Save what a person typed; a blank key keeps the key already saved under `name`.

    Raises:
        ConnectionSettingsError: A bad name, URL or CA bundle; the file cannot be written.
    """
    key = api_key.strip() or _saved_key(store, name.strip())
    ca = Path(ca_bundle).expanduser() if ca_bundle.strip() else None
    return store.add(name, base_url, key, ca)
