"""Per-OS data, config, cache and log directories, with one override for all of them.

`HEARTH_HOME` (or the CLI's `--data-dir`) moves everything under one folder: tests and
portable installs use it. Without it, platformdirs picks the per-OS places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "Hearth"
HOME_ENV = "HEARTH_HOME"


@dataclass(frozen=True)
class AppPaths:
    """Where Hearth keeps its files. Create the folders with `ensure()`."""

    data: Path
    config: Path
    cache: Path
    logs: Path

    @property
    def models(self) -> Path:
        """Models Hearth downloaded or made."""
        return self.data / "models"

    @property
    def kv_snapshots(self) -> Path:
        """Saved KV-cache states of conversations."""
        return self.cache / "kv"

    def ensure(self) -> AppPaths:
        """Create every folder (idempotent) and return self."""
        for folder in (self.data, self.config, self.cache, self.logs, self.models):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def app_paths(data_dir: Path | str | None = None) -> AppPaths:
    """Resolve the folders: explicit `data_dir`, else `$HEARTH_HOME`, else per-OS defaults."""
    root = data_dir if data_dir is not None else os.environ.get(HOME_ENV) or None
    if root is not None:
        base = Path(root).expanduser().resolve()
        return AppPaths(
            data=base / "data", config=base / "config", cache=base / "cache", logs=base / "logs"
        )
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    return AppPaths(
        data=Path(dirs.user_data_dir),
        config=Path(dirs.user_config_dir),
        cache=Path(dirs.user_cache_dir),
        logs=Path(dirs.user_log_dir),
    )
