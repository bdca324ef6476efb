"""Other apps' model folders, the Hugging Face cache and Ollama manifests, built for real
under tmp_path with tiny GGUF files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.core.models.model_sources import (
    OLLAMA_MODEL_LAYER,
    OLLAMA_PROJECTOR_LAYER,
    gguf_files_in,
    hf_cache_dir,
    hf_cache_models,
    ollama_models,
    other_app_models,
    source_roots,
)
from tests.gguf_factory import write_tiny_gguf

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def add_hf_cache_file(
    cache: Path, repo_id: str, filename: str, source: Path, commit: str = COMMIT_A
) -> Path:
    """Put `source` into a real HF cache layout; return its snapshot path (a symlink)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    data = source.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(data)
    snapshot = repo / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    depth = len(Path(filename).parts) + 1
    snapshot.symlink_to(Path(*([".."] * depth), "blobs", blob.name))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def add_ollama_model(
    root: Path,
    model: str,
    tag: str,
    gguf: Path,
    *,
    namespace: str = "library",
    registry: str = "registry.ollama.ai",
    projector: Path | None = None,
) -> Path:
    """Put a GGUF into a real Ollama layout (blob + manifest); return the model blob."""
    layers = [
        {
            "mediaType": "application/vnd.ollama.image.template",
            "digest": _blob(root, b"{{ .Prompt }}"),
        }
    ]
    layers.append({"mediaType": OLLAMA_MODEL_LAYER, "digest": _blob(root, gguf.read_bytes())})
    if projector is not None:
        layers.append(
            {"mediaType": OLLAMA_PROJECTOR_LAYER, "digest": _blob(root, projector.read_bytes())}
        )
    manifest = root / "manifests" / registry / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return root / "blobs" / layers[1]["digest"].replace(":", "-")


def _blob(root: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "blobs" / digest.replace(":", "-")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_tiny_gguf(tmp_path / "src" / "tiny.gguf", name="Tiny Source")


def test_source_roots_follow_the_home_folder_per_platform(tmp_path: Path) -> None:
    linux = source_roots(tmp_path, env={}, platform="linux")
    assert linux.hf_cache == tmp_path / ".cache" / "huggingface" / "hub"
    assert linux.lmstudio == (
        tmp_path / ".lmstudio" / "models",
        tmp_path / ".cache" / "lm-studio" / "models",
    )
    assert linux.gpt4all == (tmp_path / ".local" / "share" / "nomic.ai" / "GPT4All",)
    assert linux.ollama == tmp_path / ".ollama" / "models"
    mac = source_roots(tmp_path, env={}, platform="darwin")
    assert mac.gpt4all == (tmp_path / "Library" / "Application Support" / "nomic.ai" / "GPT4All",)
    windows = source_roots(tmp_path, env={}, platform="win32")
    assert windows.gpt4all == (tmp_path / "AppData" / "Local" / "nomic.ai" / "GPT4All",)


def test_environment_variables_move_the_hf_cache_and_ollama(tmp_path: Path) -> None:
    assert hf_cache_dir(tmp_path, {"HF_HUB_CACHE": str(tmp_path / "x")}) == tmp_path / "x"
    assert hf_cache_dir(tmp_path, {"HF_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "hub"
    assert hf_cache_dir(tmp_path, {"HF_HOME": str(tmp_path / "h"), "HF_HUB_CACHE": "/c"}) == Path(
        "/c"
    )
    assert (
        hf_cache_dir(tmp_path, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        == tmp_path / "xdg" / "huggingface" / "hub"
    )
    roots = source_roots(tmp_path, env={"OLLAMA_MODELS": str(tmp_path / "o")})
    assert roots.ollama == tmp_path / "o"


def test_folder_scan_finds_nested_gguf_files_only(tmp_path: Path, tiny: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    (folder / "a" / "b" / "deep.GGUF").write_bytes(tiny.read_bytes())
    (folder / "top.gguf").write_bytes(tiny.read_bytes())
    (folder / "notes.txt").write_text("no model")
    (folder / ".hidden" / "secret.gguf").write_bytes(tiny.read_bytes())
    (folder / "top.gguf.part").write_bytes(b"partial")
    found = gguf_files_in(folder, "folder")
    assert [c.path for c in found] == [folder / "top.gguf", folder / "a" / "b" / "deep.GGUF"]
    assert {c.source for c in found} == {"folder"}
    assert gguf_files_in(tmp_path / "missing", "folder") == []


def test_hf_cache_scan_lists_gguf_snapshots_with_their_repo(tmp_path: Path, tiny: Path) -> None:
    cache = tmp_path / "hf"
    q4 = add_hf_cache_file(cache, "owner/Tiny-GGUF", "tiny-Q4.gguf", tiny)
    nested = add_hf_cache_file(cache, "owner/Tiny-GGUF", "sub/tiny-f16.gguf", tiny)
    readme = tmp_path / "README.md"
    readme.write_text("hello")
    add_hf_cache_file(cache, "owner/Tiny-GGUF", "README.md", readme)
    dataset = cache / "datasets--owner--data" / "snapshots" / COMMIT_A
    dataset.mkdir(parents=True)
    (dataset / "data.gguf").write_bytes(tiny.read_bytes())

    found = hf_cache_models(cache)

    assert sorted(c.path for c in found) == sorted([q4, nested])
    assert {c.repo_id for c in found} == {"owner/Tiny-GGUF"}
    assert {c.source for c in found} == {"huggingface"}
    assert all(c.path.is_symlink() and c.path.resolve().parent.name == "blobs" for c in found)


def test_missing_or_empty_hf_cache_is_not_an_error(tmp_path: Path) -> None:
    assert hf_cache_models(tmp_path / "nowhere") == []
    (tmp_path / "empty").mkdir()
    assert hf_cache_models(tmp_path / "empty") == []


def test_ollama_manifests_name_their_gguf_blobs(tmp_path: Path, tiny: Path) -> None:
    root = tmp_path / "ollama"
    projector = write_tiny_gguf(tmp_path / "src" / "proj.gguf", arch="clip", seed=1)
    blob = add_ollama_model(root, "tiny", "latest", tiny, projector=projector)
    other = write_tiny_gguf(tmp_path / "src" / "other.gguf", seed=2)
    add_ollama_model(root, "other", "q4", other, namespace="someone")
    add_ollama_model(root, "remote", "q8", other, registry="hf.co", namespace="owner")
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    gone = root / "manifests" / "registry.ollama.ai" / "library" / "gone" / "latest"
    gone.parent.mkdir(parents=True)
    gone.write_text(
        json.dumps({"layers": [{"mediaType": OLLAMA_MODEL_LAYER, "digest": "sha256:" + "0" * 64}]})
    )

    found = {c.name: c for c in ollama_models(root)}

    assert set(found) == {
        "tiny:latest",
        "tiny:latest (projector)",
        "someone/other:q4",
        "hf.co/owner/remote:q8",
    }
    assert found["tiny:latest"].path == blob
    assert found["tiny:latest"].path.read_bytes() == tiny.read_bytes()
    assert blob.suffix == "" and blob.name.startswith("sha256-")
    assert found["tiny:latest (projector)"].is_projector
    assert not found["tiny:latest"].is_projector
    assert {c.source for c in found.values()} == {"ollama"}
    assert ollama_models(tmp_path / "no-ollama") == []


def test_other_apps_are_found_under_a_fake_home(tmp_path: Path, tiny: Path) -> None:
    home = tmp_path / "home"
    lms_new = home / ".lmstudio" / "models" / "pub" / "repo" / "a.gguf"
    lms_old = home / ".cache" / "lm-studio" / "models" / "pub" / "repo" / "b.gguf"
    gpt4all = home / ".local" / "share" / "nomic.ai" / "GPT4All" / "c.gguf"
    for path in (lms_new, lms_old, gpt4all):
        path.parent.mkdir(parents=True)
        path.write_bytes(tiny.read_bytes())
    hf = add_hf_cache_file(home / ".cache" / "huggingface" / "hub", "o/r", "d.gguf", tiny)
    blob = add_ollama_model(home / ".ollama" / "models", "e", "latest", tiny)

    found = other_app_models(source_roots(home, env={}, platform="linux"))

    assert [(c.path, c.source) for c in found] == [
        (hf, "huggingface"),
        (lms_new, "lmstudio"),
        (lms_old, "lmstudio"),
        (gpt4all, "gpt4all"),
        (blob, "ollama"),
    ]
