"""Find models on disk: resolve a path or a name to a GGUF file."""

from __future__ import annotations

from pathlib import Path

from app.core.errors import ModelFileError
from app.core.paths import AppPaths
from app.core.starter import STARTER, starter_path


def local_models(paths: AppPaths) -> list[Path]:
    """GGUF files in Hearth's models folder, sorted by name."""
    if not paths.models.is_dir():
        return []
    return sorted(p for p in paths.models.rglob("*.gguf") if p.is_file())


def resolve_model(name_or_path: str | None, paths: AppPaths) -> Path:
    """The GGUF file meant by a path, a model name, or None for the starter model.

    A name matches a file in the models folder by its stem, case-insensitively, first
    exactly and then as a unique substring.

    Raises:
        ModelFileError: Nothing matches, or a name matches several models.
    """
    if name_or_path is None:
        path = starter_path(paths.models)
        if not path.is_file():
            raise ModelFileError(
                f"The starter model ({STARTER.filename}) is not installed yet. Run "
                "`hearth starter` to fetch it (98 MB), or pass --model PATH to a .gguf file.",
                path=path,
            )
        return path
    candidate = Path(name_or_path).expanduser()
    if candidate.exists() or candidate.suffix.lower() == ".gguf" or "/" in name_or_path:
        return candidate
    wanted = name_or_path.lower()
    models = local_models(paths)
    exact = [p for p in models if p.stem.lower() == wanted]
    if exact:
        return exact[0]
    partial = [p for p in models if wanted in p.stem.lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        names = ", ".join(p.stem for p in partial[:5])
        raise ModelFileError(
            f"'{name_or_path}' matches several models ({names}); be more specific."
        )
    raise ModelFileError(
        f"No model named '{name_or_path}' in {paths.models}. Pass a path to a .gguf file.",
        path=paths.models,
    )
