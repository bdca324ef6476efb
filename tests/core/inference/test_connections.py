"""Saved connections: the file, the owner-only key file, and keys kept out of the rest."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.core.errors import ConnectionSettingsError
from app.core.inference.connections import ConnectionStore


def test_keys_go_to_an_owner_only_file_never_into_the_connections_file(tmp_path: Path) -> None:
    store = ConnectionStore(tmp_path, keychain=False)
    saved = store.add("gpu box", "http://10.0.0.5:8000/", api_key="sk-secret-123")
    assert saved.base_url == "http://10.0.0.5:8000/v1" and saved.has_key
    assert "sk-secret-123" not in store.path.read_text()
    assert stat.S_IMODE(store.keys_path.stat().st_mode) == 0o600
    assert store.endpoint("gpu box").api_key == "sk-secret-123"
    assert "sk-secret-123" not in repr(store.endpoint("gpu box"))
    store.add("open", "https://example.test/api/v1")
    assert [c.name for c in ConnectionStore(tmp_path, keychain=False).all()] == ["gpu box", "open"]
    store.remove("gpu box")
    assert "sk-secret-123" not in store.keys_path.read_text()
    assert [c.name for c in store.all()] == ["open"]


def test_bad_names_urls_and_ca_bundles_are_explained(tmp_path: Path) -> None:
    store = ConnectionStore(tmp_path, keychain=False)
    with pytest.raises(ConnectionSettingsError, match="not a server address"):
        store.add("x", "gpu-box:8000")
    with pytest.raises(ConnectionSettingsError, match="not a usable connection name"):
        store.add("", "http://a")
    with pytest.raises(ConnectionSettingsError, match=r"CA bundle .* does not exist"):
        store.add("x", "https://a", ca_bundle=tmp_path / "missing.pem")
    with pytest.raises(ConnectionSettingsError, match="no connection named 'y'"):
        store.endpoint("y")


def test_without_a_keychain_the_store_degrades_to_the_file(tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail

    if not isinstance(keyring.get_keyring(), fail.Keyring):
        pytest.skip(f"this machine has a keychain ({keyring.get_keyring()!r})")
    store = ConnectionStore(tmp_path)
    store.add("a", "http://127.0.0.1:9", api_key="k")
    assert store.key_storage.startswith(str(store.keys_path)) and store.keys_path.exists()
    assert store.api_key("a") == "k"
    with pytest.raises(ConnectionSettingsError, match="No OS keychain"):
        ConnectionStore(tmp_path, keychain=True)
