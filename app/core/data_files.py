"""Files that ship with Hearth: the model catalog (`models/`) and `resources/`.

They sit at the top of a source checkout and inside the package (`app.catalog`,
`app.resources`) once installed or bundled; these functions find them in either place.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # app/
_LAYOUTS = {
    "catalog": ("models", "catalog"),
    "resources": ("resources", "resources"),
}


def _folder(kind: str) -> Path:
    checkout_name, package_name = _LAYOUTS[kind]
    candidates = [_PACKAGE / package_name, _PACKAGE.parent / checkout_name]
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        candidates.insert(0, Path(frozen_root) / "app" / package_name)
    for folder in candidates:
        if folder.is_dir():
            return folder
    return candidates[-1]


def catalog_file() -> Path:
    """The curated model catalog (`models/catalog.json`)."""
    return _folder("catalog") / "catalog.json"


def resource_file(name: str) -> Path:
    """A file in `resources/` (e.g. "hearth.svg", "icons/hearth-256.png")."""
    return _folder("resources") / name
