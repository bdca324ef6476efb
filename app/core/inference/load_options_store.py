"""Load options saved per model file, in one JSON file in the config folder.

Only the options that differ from `LoadOptions()` are stored, so a model keeps following
Hearth's defaults for everything the person never changed. The file is replaced
atomically; a damaged file is logged, kept aside as `<name>.damaged`, and read as empty.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from app.core.inference.load_options import LoadOptions

log = logging.getLogger(__name__)

SETTINGS_FILE_NAME = "model_settings.json"
_FORMAT_VERSION = 1
_FIELDS = {f.name: f for f in dataclasses.fields(LoadOptions)}
_DEFAULTS = LoadOptions()


def model_key(model_path: Path | str) -> str:
    """The identity a model's settings are saved under: its absolute path."""
    return str(Path(model_path).expanduser().resolve())


class LoadOptionsStore:
    """`LoadOptions` per model file. Safe to share between threads of one process."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / SETTINGS_FILE_NAME
        self._lock = threading.Lock()

    def get(self, model_path: Path | str) -> LoadOptions | None:
        """The saved options of a model, or None if none are saved (or they are unusable)."""
        with self._lock:
            entry = self._read().get(model_key(model_path))
        if not isinstance(entry, dict):
            return None
        return _options_from(entry, model_path)

    def options_for(
        self, model_path: Path | str, default: LoadOptions | None = None
    ) -> LoadOptions:
        """The options to load a model with: its saved ones, else `default`, else
        Hearth's defaults."""
        saved = self.get(model_path)
        if saved is not None:
            return saved
        return default if default is not None else LoadOptions()

    def set(self, model_path: Path | str, options: LoadOptions) -> None:
        """Save a model's options, replacing what was saved before."""
        with self._lock:
            models = self._read()
            models[model_key(model_path)] = _changed_fields(options)
            self._write(models)

    def forget(self, model_path: Path | str) -> bool:
        """Drop a model's saved options; True if there were some."""
        with self._lock:
            models = self._read()
            if models.pop(model_key(model_path), None) is None:
                return False
            self._write(models)
            return True

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError:
            log.exception("cannot read %s; using no saved model settings", self.path)
            return {}
        try:
            data = json.loads(text)
            models = data["models"]
            if not isinstance(models, dict):
                raise TypeError("'models' is not an object")
        except (ValueError, TypeError, KeyError) as exc:
            self._set_aside(exc)
            return {}
        return models

    def _set_aside(self, problem: Exception) -> None:
        damaged = self.path.with_name(self.path.name + ".damaged")
        log.warning(
            "%s is damaged (%s); starting from no saved model settings, old file kept as %s",
            self.path,
            problem,
            damaged.name,
        )
        try:
            os.replace(self.path, damaged)
        except OSError:
            log.exception("cannot move %s aside", self.path)

    def _write(self, models: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": _FORMAT_VERSION, "models": models}, indent=1)
        handle, temporary = tempfile.mkstemp(
            prefix=self.path.name, suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _changed_fields(options: LoadOptions) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(options, name)
        if value != getattr(_DEFAULTS, name):
            changed[name] = list(value) if isinstance(value, tuple) else value
    return changed


def _options_from(entry: dict[str, Any], model_path: Path | str) -> LoadOptions | None:
    values = {name: value for name, value in entry.items() if name in _FIELDS}
    if isinstance(values.get("tensor_split"), list):
        values["tensor_split"] = tuple(values["tensor_split"])
    try:
        options = LoadOptions(**values)
        _check_types(options)
    except (TypeError, ValueError) as exc:
        log.warning("ignoring the saved settings of %s: %s", model_path, exc)
        return None
    return options


def _check_types(options: LoadOptions) -> None:
    """Reject values JSON let through that LoadOptions' own checks do not catch."""
    for name in _FIELDS:
        value, default = getattr(options, name), getattr(_DEFAULTS, name)
        if value is None or default is None:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"{name} must be a whole number, not {value!r}")
            continue
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, type(default)
        ):
            raise TypeError(f"{name} must be a {type(default).__name__}, not {value!r}")
