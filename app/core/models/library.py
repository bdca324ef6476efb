"""The local model library: every GGUF on this machine, described, with whether it fits.

A model "fits" only when its memory needs fit this machine and the load probe has loaded it
with this llama.cpp (`app.core.machine.load_verdicts`); until then it is "untried". Files
that crashed or were refused by llama.cpp are listed with the reason, and values that load
but make no sense (`app.core.gguf_checks`, NaN outputs) as warnings.

Models come from Hearth's models folder (with the starter model), folders the person
added, the Hugging Face cache and the model folders of LM Studio, GPT4All and Ollama
(`app.core.models.model_sources`); nothing is copied or moved. Each file's header is read once
and remembered in a cache keyed by (path, size, modification time), so a second scan
reads no headers. Only files Hearth downloaded or made (their provenance is recorded) and
the starter model can be deleted.

`resolve_model` and `local_models` turn a name or path into one file for the chat
commands and the app.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from app.core.errors import HearthError, ModelFileError
from app.core.gguf_file import read_gguf_info
from app.core.machine.load_verdicts import (
    LoadVerdicts,
    nan_warning,
    probe_cache_dir,
    verdict_problem,
)
from app.core.models.library_headers import (
    HeaderCache,
    HeaderFacts,
    HeaderReader,
    file_size,
    named_projector,
    write_json_atomically,
)
from app.core.models.model_sources import (
    ModelCandidate,
    SourceRoots,
    gguf_files_in,
    other_app_models,
    source_roots,
)
from app.core.models.provenance import Origin, forget_origin, read_origins
from app.core.models.starter import STARTER, starter_path
from app.core.paths import AppPaths

log = logging.getLogger(__name__)

FITS_SHARE = 0.8
"""A model "fits" when it needs at most this share of the memory available."""
FOLDERS_FILE_NAME = "library_folders.json"
HEADER_CACHE_FILE_NAME = "library_headers.json"
_SPLIT_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)


class LibraryError(HearthError):
    """A library action was refused or failed (delete, add a folder)."""


@dataclass(frozen=True)
class LibraryModel:
    """One model in the library: a single GGUF file, or the shards of a split model.

    Attributes:
        path: The file to load (the first shard of a split model).
        files: Every file of the model (all shards, in order).
        name: general.name, else the file name without its suffix (Ollama: "model:tag").
        architecture: "llama", "qwen2"...; "" if the header is unreadable.
        n_params: Parameters (estimated from the shard sizes for split models); 0 if unknown.
        quant: "Q4_K_M", "F16"...; "" if unknown.
        size_bytes: All files together.
        context_length: The context the model was trained for; 0 if unknown.
        has_chat_template: Whether the header carries a chat template.
        is_projector: A vision projector (mmproj): listed, marked, not a chat model.
        source: "hearth", "starter", "huggingface", "folder", "lmstudio", "gpt4all",
            "ollama".
        deletable: Hearth downloaded or made it (provenance), or it is the starter.
        repo_id: The Hub repo when known.
        fit: "fits" (memory to spare, and known to load with this llama.cpp), "untried"
            (memory to spare, never loaded yet), "tight", "too_big" or "unknown".
        memory_needed: Estimated bytes to run it at the default context; 0 if unknown.
        problem: Why the file cannot be used (damaged, truncated, crashed llama.cpp...),
            else None.
        warnings: Values that load but make no sense (a rope base of 0, token ids outside
            the vocabulary, NaN outputs), for a person; empty when none.
    """

    path: Path
    files: tuple[Path, ...]
    name: str
    architecture: str
    n_params: int
    quant: str
    size_bytes: int
    context_length: int
    has_chat_template: bool
    is_projector: bool
    source: str
    deletable: bool
    repo_id: str | None
    fit: str
    memory_needed: int
    problem: str | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (paths as text)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["files"] = [str(file) for file in self.files]
        data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class MachineMemory:
    """The memory a model can use on this machine now, in bytes (0 = unknown)."""

    ram_available: int
    vram_free: tuple[int, ...] = ()

    @classmethod
    def measure(cls) -> MachineMemory:
        """Ask the OS and llama.cpp. On macOS the GPU shares RAM, so only RAM counts."""
        from app.core.machine.hardware import available_memory, gpu_free_memory

        vram: tuple[int, ...] = ()
        if sys.platform != "darwin":
            try:
                vram = tuple(gpu_free_memory())
            except Exception:  # llama.cpp missing or broken: judge by RAM alone
                log.exception("cannot ask llama.cpp for free GPU memory")
        return cls(ram_available=available_memory(), vram_free=vram)


def fit_verdict(needed: int, ram_available: int, vram_free: Sequence[int] = ()) -> str:
    """Whether `needed` bytes fit the memory available: RAM plus the GPUs' free memory
    (llama.cpp can split a model between them).

    Returns:
        "fits" (at most 80% of it), "tight" (at most all of it), "too_big", or "unknown"
        when either side is unknown (0).
    """
    available = ram_available + sum(vram_free)
    if needed <= 0 or available <= 0:
        return "unknown"
    if needed <= available * FITS_SHARE:
        return "fits"
    if needed <= available:
        return "tight"
    return "too_big"


class LibraryFolders:
    """Folders the person added to the library, kept in config/library_folders.json."""

    def __init__(self, config_dir: Path) -> None:
        self._file = config_dir / FOLDERS_FILE_NAME

    def list(self) -> list[Path]:
        """The added folders, in the order they were added (some may be gone now)."""
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            folders = data["folders"]
            if not isinstance(folders, list):
                raise TypeError("'folders' is not a list")
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring %s: %s", self._file, exc)
            return []
        return [Path(folder) for folder in folders if isinstance(folder, str)]

    def add(self, folder: Path) -> None:
        """Add a folder (no-op if already there).

        Raises:
            LibraryError: It is not an existing folder.
        """
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise LibraryError(
                f"{folder} is not a folder: pick the folder that holds your .gguf files.",
                path=folder,
            )
        current = self.list()
        if folder not in current:
            self._save([*current, folder])

    def remove(self, folder: Path) -> None:
        """Stop listing a folder's models (its files stay where they are).

        Raises:
            LibraryError: The folder is not in the list.
        """
        wanted = Path(folder).expanduser().resolve()
        current = self.list()
        kept = [f for f in current if f != wanted and f != Path(folder)]
        if len(kept) == len(current):
            raise LibraryError(
                f"{folder} is not one of the library's folders"
                + (f" ({', '.join(str(f) for f in current)})." if current else " (none added).")
            )
        self._save(kept)

    def _save(self, folders: Sequence[Path]) -> None:
        write_json_atomically(self._file, {"folders": [str(f) for f in folders]})


def scan_library(
    paths: AppPaths,
    *,
    extra_folders: Sequence[Path] | None = None,
    include_other_apps: bool = True,
    roots: SourceRoots | None = None,
    machine: MachineMemory | None = None,
    read_header: HeaderReader = read_gguf_info,
    verdicts: LoadVerdicts | None = None,
) -> list[LibraryModel]:
    """Every model on this machine, sorted by name. Never raises for a bad file: such
    files are listed with `problem` set.

    Args:
        paths: Hearth's folders (models, and the cache for remembered headers).
        extra_folders: Folders to scan besides the models folder; None for the ones the
            person added (`LibraryFolders`).
        include_other_apps: Also list the HF cache, LM Studio, GPT4All and Ollama.
        roots: Where those apps keep models; None for this machine's (`source_roots()`).
        machine: Memory to judge the fit against; None to measure it now.
        read_header: Reads one header (tests count calls).
        verdicts: What the load probe found per file; None for the app's cache.
    """
    folders = LibraryFolders(paths.config).list() if extra_folders is None else extra_folders
    candidates = _hearth_candidates(paths)
    for folder in folders:
        candidates += gguf_files_in(Path(folder), "folder")
    if include_other_apps:
        candidates += other_app_models(roots or source_roots())
    groups = _group(_unique(candidates))
    machine = machine if machine is not None else MachineMemory.measure()
    origins = read_origins(paths.models) if paths.models.is_dir() else {}
    cache = HeaderCache(paths.cache / HEADER_CACHE_FILE_NAME, read_header)
    if verdicts is None:
        verdicts = LoadVerdicts(probe_cache_dir(paths.cache))
    models = [_describe(group, cache, origins, machine, verdicts) for group in groups]
    cache.save()
    return sorted(models, key=lambda m: (m.name.casefold(), str(m.path)))


def delete_model(paths: AppPaths, model: LibraryModel) -> None:
    """Delete every file of a model Hearth downloaded or made, and its provenance records.

    Raises:
        LibraryError: The model is not Hearth's own (another app's, an added folder's, or
            not recorded), a file lies outside the models folder, or a file cannot be
            deleted.
    """
    if not model.deletable:
        raise LibraryError(
            f"'{model.name}' ({model.path}) was not downloaded or made by Hearth, so Hearth "
            f"will not delete it{_owner_hint(model.source)}.",
            path=model.path,
        )
    root = paths.models.resolve()
    origins = read_origins(paths.models)
    starter = starter_path(paths.models).resolve()
    targets: list[Path] = []
    for file in model.files:
        real = _real(file)
        if not real.is_relative_to(root):
            raise LibraryError(
                f"{file} is outside Hearth's models folder ({paths.models}); Hearth deletes "
                "only files in its own folder.",
                path=file,
            )
        if real not in origins and real != starter:
            raise LibraryError(
                f"{file.name} has no record of being downloaded or made by Hearth, so it was "
                "not deleted. Delete it in your file manager if you are sure.",
                path=file,
            )
        targets.append(real)
    for real in targets:
        try:
            real.unlink(missing_ok=True)
        except OSError as exc:
            raise LibraryError(
                f"Could not delete {real} ({exc.strerror or exc}): check that no other program "
                "uses it and that you may change the folder.",
                path=real,
            ) from exc
        forget_origin(paths.models, real)
        _remove_empty_parents(real.parent, root)


def local_models(paths: AppPaths) -> list[Path]:
    """GGUF files in Hearth's models folder, sorted by name."""
    if not paths.models.is_dir():
        return []
    return sorted(p for p in paths.models.rglob("*.gguf") if p.is_file())


def resolve_model(name_or_path: str | None, paths: AppPaths) -> Path:
    """The GGUF file meant by a path, a model name, or None for the starter model.

    A name matches a file in the models folder by its stem, case-insensitively, first
    exactly and then as a unique substring; failing that, a library model (from any
    source, "llama3.2:3b" for Ollama) by its exact name.

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
    found = _library_model_named(wanted, paths)
    if found is not None:
        return found
    raise ModelFileError(
        f"No model named '{name_or_path}' in {paths.models} or the library. Pass a path to "
        "a .gguf file, or see `hearth models` for the names.",
        path=paths.models,
    )


def _library_model_named(wanted: str, paths: AppPaths) -> Path | None:
    """The one usable library model whose name or file stem is `wanted` (lowercase)."""
    try:
        library = scan_library(paths, machine=MachineMemory(0))
    except Exception:  # the fallback must never hide the real "not found" answer
        log.exception("library scan for a model name failed")
        return None
    matches = {
        m.path
        for m in library
        if not m.is_projector
        and m.problem is None
        and wanted in (m.name.lower(), m.path.stem.lower())
    }
    return matches.pop() if len(matches) == 1 else None


# --- gathering -------------------------------------------------------------------------


def _hearth_candidates(paths: AppPaths) -> list[ModelCandidate]:
    starter = starter_path(paths.models)
    return [
        replace(c, source="starter") if c.path == starter else c
        for c in gguf_files_in(paths.models, "hearth")
    ]


def _unique(candidates: Iterable[ModelCandidate]) -> list[ModelCandidate]:
    """Drop files already seen under another name (a symlink, a shared blob)."""
    seen: set[Path] = set()
    unique: list[ModelCandidate] = []
    for candidate in candidates:
        real = _real(candidate.path)
        if real not in seen:
            seen.add(real)
            unique.append(candidate)
    return unique


@dataclass
class _Group:
    """The candidates that make one model: one file, or the shards of a split model."""

    base: str
    count: int
    shards: dict[int, ModelCandidate] = field(default_factory=dict)


def _group(candidates: Iterable[ModelCandidate]) -> list[_Group]:
    groups: dict[tuple[Path, str, int] | Path, _Group] = {}
    for candidate in candidates:
        match = _SPLIT_NAME.match(candidate.path.name)
        if match is None:
            groups[candidate.path] = _Group(base=candidate.path.stem, count=1)
            groups[candidate.path].shards[1] = candidate
            continue
        count = int(match["count"])
        key = (candidate.path.parent, match["base"], count)
        group = groups.setdefault(key, _Group(base=match["base"], count=count))
        group.shards.setdefault(int(match["index"]), candidate)
    return list(groups.values())


# --- describing ------------------------------------------------------------------------


def _describe(
    group: _Group,
    cache: HeaderCache,
    origins: dict[Path, Origin],
    machine: MachineMemory,
    verdicts: LoadVerdicts,
) -> LibraryModel:
    ordered = [group.shards[i] for i in sorted(group.shards)]
    first = ordered[0]
    files = tuple(c.path for c in ordered)
    sizes = [file_size(path) for path in files]
    if first.problem is not None:  # not a regular file: never open it (a FIFO would block)
        facts = HeaderFacts(problem=first.problem)
    elif 1 in group.shards:
        facts = cache.facts(first.path)
    else:
        facts = HeaderFacts(problem=f"The first part of the split model '{group.base}' is missing.")
    missing = [i for i in range(1, group.count + 1) if i not in group.shards]
    problem = facts.problem
    if missing and problem is None:
        several = len(missing) > 1
        problem = (
            f"Part{'s' if several else ''} {', '.join(str(i) for i in missing)} of "
            f"{group.count} of the split model '{group.base}' {'are' if several else 'is'} "
            "missing: download the missing parts again."
        )
    is_projector = facts.is_projector or first.is_projector or named_projector(first.path)
    if is_projector and facts.unsupported:
        problem = None
    extra = sum(sizes[1:])
    n_params = facts.n_params
    if extra and facts.tensor_bytes:
        n_params = round(n_params * (facts.tensor_bytes + extra) / facts.tensor_bytes)
    memory = facts.memory_needed + extra if facts.memory_needed and not is_projector else 0
    warnings = facts.warnings
    verdict = None if problem or is_projector else verdicts.for_file(first.path)
    if verdict is not None:
        problem = verdict_problem(first.path, verdict)
        if verdict.loads and not verdict.finite:
            warnings = (*warnings, nan_warning(first.path))
    fit = "unknown" if problem or is_projector else fit_verdict(memory, *_machine(machine))
    if fit == "fits" and (verdict is None or not verdict.loads):
        fit = "untried"
    origin_list = [origins.get(_real(path)) for path in files]
    is_starter = first.source == "starter"
    deletable = is_starter or (first.source == "hearth" and all(origin_list))
    repo_id = first.repo_id or next((o.repo_id for o in origin_list if o and o.repo_id), None)
    return LibraryModel(
        path=first.path,
        files=files,
        name=first.name or facts.name or group.base,
        architecture=facts.architecture,
        n_params=n_params,
        quant=facts.quant,
        size_bytes=sum(sizes),
        context_length=facts.context_length,
        has_chat_template=facts.has_chat_template,
        is_projector=is_projector,
        source=first.source,
        deletable=deletable,
        repo_id=repo_id,
        fit=fit,
        memory_needed=memory,
        problem=problem,
        warnings=warnings,
    )


def _real(path: Path) -> Path:
    """The path with links resolved; the path itself for a symlink loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return path.absolute()


def _machine(machine: MachineMemory) -> tuple[int, tuple[int, ...]]:
    return machine.ram_available, machine.vram_free


# --- helpers ---------------------------------------------------------------------------


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """Remove now-empty folders from `folder` up to (not including) `root`."""
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


_OWNER_HINTS = {
    "lmstudio": " (it belongs to LM Studio: delete it there)",
    "gpt4all": " (it belongs to GPT4All: delete it there)",
    "ollama": " (it belongs to Ollama: remove it with `ollama rm`)",
    "huggingface": " (it is in the Hugging Face cache: remove it with `hf cache rm`)",
    "folder": " (it is in a folder you added: delete it in your file manager)",
    "hearth": " (it was copied into the models folder: delete it in your file manager)",
}


def _owner_hint(source: str) -> str:
    return _OWNER_HINTS.get(source, "")
