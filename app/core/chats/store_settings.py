"""The store's global defaults (sampler settings, system prompt) and saved presets."""

from __future__ import annotations

import json
from typing import Any

from app.core.chats.store_base import StoreBase
from app.core.chats.store_rows import settings_from_json, settings_json
from app.core.errors import InvalidPresetNameError, RecordNotFoundError
from app.core.inference.sampling import PRESETS, SamplingSettings


class SettingsStore(StoreBase):
    """Default settings and presets, kept in the `preferences` and `presets` tables."""

    def default_settings(self) -> SamplingSettings:
        """The global default sampler settings (built-in defaults until set)."""
        value = self._preference("default_settings")
        return SamplingSettings.from_dict(value) if value is not None else SamplingSettings()

    def set_default_settings(self, settings: SamplingSettings) -> None:
        """Replace the global default sampler settings."""
        self._set_preference("default_settings", settings.to_dict())

    def default_system_prompt(self) -> str:
        """The system prompt new conversations start with ("" until set)."""
        value = self._preference("default_system_prompt")
        return str(value) if value is not None else ""

    def set_default_system_prompt(self, text: str) -> None:
        """Replace the system prompt new conversations start with."""
        self._set_preference("default_system_prompt", text)

    def presets(self) -> dict[str, SamplingSettings]:
        """The person's saved presets by name, alphabetical (built-ins are `PRESETS`)."""
        rows = self._rows("SELECT name, settings FROM presets ORDER BY name")
        return {str(name): settings_from_json(text) for name, text in rows}

    def save_preset(self, name: str, settings: SamplingSettings) -> None:
        """Save (or overwrite) a named preset."""
        clean = name.strip()
        if not clean:
            raise InvalidPresetNameError("A preset needs a name.")
        if clean.casefold() in {p.casefold() for p in PRESETS}:
            raise InvalidPresetNameError(f'"{clean}" is a built-in preset; pick another name.')
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO presets (name, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET name = excluded.name, "
                "settings = excluded.settings, updated_at = excluded.updated_at",
                (clean, settings_json(settings), self._clock()),
            )

    def rename_preset(self, old: str, new: str) -> None:
        """Rename a saved preset (replacing any preset already called `new`)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT settings FROM presets WHERE name = ?", (old,)).fetchone()
            if row is None:
                raise RecordNotFoundError(f'There is no preset called "{old}".')
            conn.execute("DELETE FROM presets WHERE name = ?", (old,))
            self.save_preset(new, settings_from_json(row[0]))

    def delete_preset(self, name: str) -> bool:
        """Delete a saved preset; False if there was none by that name."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount > 0

    def _preference(self, key: str) -> Any:
        row = self._row("SELECT value FROM preferences WHERE key = ?", (key,))
        return json.loads(row[0]) if row is not None else None

    def _set_preference(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO preferences (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
