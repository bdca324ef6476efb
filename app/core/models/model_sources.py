"""Where GGUF files already live on this machine: folders, the Hugging Face cache, and the
model folders of LM Studio, GPT4All and Ollama.

Each source yields `ModelCandidate`s (one file each, never copied or moved); the library
groups them into models and reads their headers. The other apps' folders come from
`source_roots`, which takes the home folder and the environment so tests can point it at a
fake home.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_PROJECTOR_LAYER = "application/vnd.ollama.image.projector"
OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"
OLLAMA_DEFAULT_NAMESPACE = "library"
_MANIFEST_DEPTH = 4  # manifests/<registry>/<namespace>/<model>/<tag>
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelCandidate:
    """One file that may be a model, and what its source knows about it.

    Attributes:
        path: The file as the source names it (a symlink in the HF cache, a blob in Ollama).
        source: "hearth", "folder", "huggingface", "lmstudio", "gpt4all" or "ollama".
        repo_id: The Hub repo, when the source knows it.
        name: A name the source gives the model (Ollama's "llama3.2:3b"), else None.
        is_projector: The source says it is a vision projector (Ollama's projector layer).
        problem: Why this name is not a model file at all (a folder, a FIFO, a symlink
            loop...), found without opening it; None for a regular file.
    """

    path: Path
    source: str
    repo_id: str | None = None
    name: str | None = None
    is_projector: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class SourceRoots:
    """The folders where other apps keep models; a folder may not exist.

    Attributes:
        hf_cache: The Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub).
        lmstudio: LM Studio's model folders (current and older layout).
        gpt4all: GPT4All's data folder, where it downloads models.
        ollama: Ollama's models folder (OLLAMA_MODELS), holding manifests/ and blobs/.
    """

    hf_cache: Path
    lmstudio: tuple[Path, ...]
    gpt4all: tuple[Path, ...]
    ollama: Path


def source_roots(
    home: Path | None = None, env: Mapping[str, str] | None = None, platform: str | None = None
) -> SourceRoots:
    """Where the other apps keep their models on this machine.

    Args:
        home: The person's home folder; None for the real one (and the per-OS data folder
            from platformdirs, which honours XDG_DATA_HOME).
        env: Environment variables to honour (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME,
            OLLAMA_MODELS); None for `os.environ`.
        platform: `sys.platform` to lay out folders for; None for this one.
    """
    env = os.environ if env is None else env
    platform = platform or sys.platform
    base = home if home is not None else Path.home()
    return SourceRoots(
        hf_cache=hf_cache_dir(base, env),
        lmstudio=(base / ".lmstudio" / "models", base / ".cache" / "lm-studio" / "models"),
        gpt4all=(_user_data_dir(home, platform) / "nomic.ai" / "GPT4All",),
        ollama=_expand(env["OLLAMA_MODELS"])
        if env.get("OLLAMA_MODELS")
        else base / ".ollama" / "models",
    )


def hf_cache_dir(home: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, read from the environment now (as huggingface_hub does)."""
    env = os.environ if env is None else env
    base = home if home is not None else Path.home()
    if env.get("HF_HUB_CACHE"):
        return _expand(env["HF_HUB_CACHE"])
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return _expand(env["HUGGINGFACE_HUB_CACHE"])
    if env.get("HF_HOME"):
        return _expand(env["HF_HOME"]) / "hub"
    cache_home = _expand(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else base / ".cache"
    return cache_home / "huggingface" / "hub"


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def _user_data_dir(home: Path | None, platform: str) -> Path:
    """The per-OS folder apps keep their data in (GPT4All's parent folder)."""
    if home is None:
        return Path(platformdirs.user_data_dir())
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        return home / "AppData" / "Local"
    return home / ".local" / "share"


def gguf_files_in(folder: Path, source: str) -> list[ModelCandidate]:
    """Every .gguf name under `folder` (recursively, sorted); [] if the folder is missing.

    Names that are not regular files (folders, FIFOs, devices, sockets, broken links and
    symlink loops called `*.gguf`) are listed with `problem` set; they are never opened.
    """
    if not folder.is_dir():
        return []
    found: list[ModelCandidate] = []
    for root, dirs, files in os.walk(folder, onerror=_log_walk_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        named = [n for n in (*dirs, *files) if n.lower().endswith(GGUF_SUFFIX)]
        for name in sorted(n for n in named if not n.startswith(".")):
            path = Path(root) / name
            found.append(ModelCandidate(path=path, source=source, problem=not_a_file(path)))
    return found


def not_a_file(path: Path) -> str | None:
    """Why `path` is not a regular file that could be a model, or None if it is one.

    Looks only at the file system's entries (stat, lstat, readlink); never opens the file,
    so a FIFO cannot block the caller.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        try:
            is_link = stat.S_ISLNK(path.lstat().st_mode)
        except OSError:
            is_link = False
        if is_link and exc.errno == errno.ELOOP:
            return f"'{path.name}' is a symbolic link that leads back to itself (a loop)."
        if is_link:
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"'{path.name}' is a link to '{target}', which does not exist."
        return f"'{path.name}' cannot be looked at ({exc.strerror or exc})."
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a folder, not a model file"),
        (stat.S_ISFIFO, "a named pipe (FIFO), not a model file; Hearth does not read it"),
        (stat.S_ISCHR, "a device, not a model file"),
        (stat.S_ISBLK, "a device, not a model file"),
        (stat.S_ISSOCK, "a socket, not a model file"),
    )
    what = next((text for test, text in kinds if test(mode)), "not a regular file")
    return f"'{path.name}' is {what}."


def _log_walk_error(error: OSError) -> None:
    log.warning("cannot list %s: %s", error.filename, error.strerror or error)


def hf_cache_models(cache_dir: Path) -> list[ModelCandidate]:
    """GGUF files in the snapshots of the model repos of a Hugging Face cache.

    A missing cache gives []. Newer revisions come first, so a blob that several
    revisions share is named by its newest snapshot.
    """
    from huggingface_hub import CacheNotFound, scan_cache_dir

    if not cache_dir.is_dir():
        return []
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, ValueError, OSError) as exc:
        log.warning("cannot scan the Hugging Face cache %s: %s", cache_dir, exc)
        return []
    for warning in info.warnings:
        log.info("Hugging Face cache: %s", warning)
    found: list[ModelCandidate] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash))
        for revision in revisions:
            for file in sorted(revision.files, key=lambda f: str(f.file_path)):
                if file.file_name.lower().endswith(GGUF_SUFFIX):
                    found.append(
                        ModelCandidate(
                            path=file.file_path, source="huggingface", repo_id=repo.repo_id
                        )
                    )
    return found


def ollama_models(models_dir: Path) -> list[ModelCandidate]:
    """The model (and projector) blobs named by Ollama's manifests; [] if there are none.

    A manifest is manifests/<registry>/<namespace>/<model>/<tag>; its layer of media type
    `OLLAMA_MODEL_LAYER` names the GGUF blob (blobs/sha256-<hex>, no .gguf suffix). The model
    is named as `ollama list` names it: "<model>:<tag>" for the default registry's library.
    """
    manifests = models_dir / "manifests"
    if not manifests.is_dir():
        return []
    found: list[ModelCandidate] = []
    for manifest in sorted(_manifest_files(manifests)):
        parts = manifest.relative_to(manifests).parts
        name = _ollama_name(*parts)
        for media_type, digest in _manifest_layers(manifest):
            if media_type not in (OLLAMA_MODEL_LAYER, OLLAMA_PROJECTOR_LAYER):
                continue
            blob = models_dir / "blobs" / digest.replace(":", "-")
            if not blob.is_file():
                log.warning("Ollama manifest %s names a missing blob %s", manifest, blob.name)
                continue
            projector = media_type == OLLAMA_PROJECTOR_LAYER
            found.append(
                ModelCandidate(
                    path=blob,
                    source="ollama",
                    name=f"{name} (projector)" if projector else name,
                    is_projector=projector,
                )
            )
    return found


def _manifest_files(manifests: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(manifests, onerror=_log_walk_error):
        depth = len(Path(root).relative_to(manifests).parts)
        if depth >= _MANIFEST_DEPTH - 1:
            dirs[:] = []
            if depth == _MANIFEST_DEPTH - 1:
                yield from (Path(root) / f for f in files if not f.startswith("."))


def _ollama_name(registry: str, namespace: str, model: str, tag: str) -> str:
    if registry == OLLAMA_DEFAULT_REGISTRY:
        prefix = "" if namespace == OLLAMA_DEFAULT_NAMESPACE else f"{namespace}/"
    else:
        prefix = f"{registry}/{namespace}/"
    return f"{prefix}{model}:{tag}"


def _manifest_layers(manifest: Path) -> list[tuple[str, str]]:
    """(mediaType, digest) of each layer of a manifest; [] for an unreadable one."""
    try:
        if manifest.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ValueError("too large for a manifest")
        data = json.loads(manifest.read_text(encoding="utf-8"))
        layers = data["layers"]
        pairs = [(str(layer["mediaType"]), str(layer["digest"])) for layer in layers]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the Ollama manifest %s: %s", manifest, exc)
        return []
    return [(media, digest) for media, digest in pairs if digest.startswith("sha256:")]


def other_app_models(roots: SourceRoots) -> list[ModelCandidate]:
    """Models of the Hugging Face cache, LM Studio, GPT4All and Ollama, in that order."""
    found = hf_cache_models(roots.hf_cache)
    for folder in roots.lmstudio:
        found += gguf_files_in(folder, "lmstudio")
    for folder in roots.gpt4all:
        found += gguf_files_in(folder, "gpt4all")
    found += ollama_models(roots.ollama)
    return found
