"""`hearth models`: the library as JSON or a table, and its folders, over real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.core.gguf_file import read_gguf_info
from app.core.models.provenance import Origin, record_origin
from app.core.paths import app_paths
from tests.core.models.test_model_sources import add_hf_cache_file, add_ollama_model
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf

FIELDS = {"path", "name", "architecture", "quant", "size_bytes", "context_length"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home for the other apps' folders; the real one is never read."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setenv("USERPROFILE", str(folder))
    for variable in (
        "HF_HUB_CACHE",
        "HF_HOME",
        "HUGGINGFACE_HUB_CACHE",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "OLLAMA_MODELS",
    ):
        monkeypatch.delenv(variable, raising=False)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "hearth"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_describes_every_source(
    capsys: pytest.CaptureFixture[str], home: Path, data_dir: Path, tmp_path: Path
) -> None:
    models = app_paths(data_dir).ensure().models
    own = write_tiny_gguf(models / "own.gguf", name="Own", chat_template=CHATML_TEMPLATE)
    record_origin(models, own, Origin(kind="quantize", quant="F32"))
    lms = home / ".lmstudio" / "models" / "pub" / "repo" / "lms-f16.gguf"
    lms.parent.mkdir(parents=True)
    write_tiny_gguf(lms, name="LM Studio Model", dtype="f16", context_length=1024)
    (tmp_path / "src").mkdir()
    source = write_tiny_gguf(tmp_path / "src" / "s.gguf", name="Hub Model", seed=2)
    snapshot = add_hf_cache_file(
        home / ".cache" / "huggingface" / "hub", "owner/Hub-GGUF", "hub-q.gguf", source
    )
    blob = add_ollama_model(home / ".ollama" / "models", "tiny", "latest", source)
    gpt4all = home / ".local" / "share" / "nomic.ai" / "GPT4All" / "g.gguf"
    gpt4all.parent.mkdir(parents=True)
    write_tiny_gguf(gpt4all, name="GPT4All Model", seed=3)

    code, out, _ = run(capsys, "models", "--json", "--data-dir", str(data_dir))

    assert code == 0
    listed = json.loads(out)
    assert isinstance(listed, list)
    by_path = {Path(entry["path"]): entry for entry in listed}
    assert set(by_path) == {own, lms, snapshot, blob, gpt4all}
    for path, entry in by_path.items():
        assert set(entry) >= FIELDS
        info = read_gguf_info(path)
        assert entry["architecture"] == info.architecture
        assert entry["quant"] == info.quant
        assert entry["size_bytes"] == path.stat().st_size
        assert entry["context_length"] == info.context_length
        assert entry["fit"] in {"fits", "untried", "tight", "too_big", "unknown"}
        assert entry["problem"] is None
    assert by_path[own]["name"] == "Own" and by_path[own]["deletable"] is True
    assert by_path[own]["has_chat_template"] is True
    assert by_path[lms]["source"] == "lmstudio" and by_path[lms]["quant"] == "F16"
    assert by_path[snapshot]["repo_id"] == "owner/Hub-GGUF"
    assert by_path[snapshot]["source"] == "huggingface"
    assert by_path[blob]["name"] == "tiny:latest" and by_path[blob]["source"] == "ollama"
    assert by_path[gpt4all]["source"] == "gpt4all"
    assert [e["deletable"] for e in listed].count(True) == 1
    assert [e["name"] for e in listed] == sorted((e["name"] for e in listed), key=str.casefold)


def test_models_table_is_readable(
    capsys: pytest.CaptureFixture[str], home: Path, data_dir: Path
) -> None:
    models = app_paths(data_dir).ensure().models
    write_tiny_gguf(models / "tiny.gguf", name="Tiny Chat", context_length=2048)
    write_tiny_gguf(models / "mmproj-tiny.gguf", arch="clip", name="Tiny Vision")
    (models / "broken.gguf").write_text("<html>not a model</html>")

    code, out, _ = run(capsys, "models", "--data-dir", str(data_dir))

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "QUANT", "SIZE", "CONTEXT", "SOURCE", "FIT"]
    chat = next(line for line in lines if line.startswith("Tiny Chat"))
    assert "F32" in chat and "2,048" in chat and "hearth" in chat
    assert chat.split()[-1] in {"fits", "untried", "tight", "big", "?"}
    vision = next(line for line in lines if line.startswith("Tiny Vision"))
    assert "[mmproj]" in vision and vision.endswith("projector")
    broken = next(line for line in lines if line.startswith("broken"))
    assert broken.endswith("problem")
    assert "Files that cannot be used:" in out and "web page" in out


def test_empty_library_says_what_to_do(
    capsys: pytest.CaptureFixture[str], home: Path, data_dir: Path
) -> None:
    code, out, _ = run(capsys, "models", "--data-dir", str(data_dir))
    assert code == 0 and "hearth starter" in out
    code, out, _ = run(capsys, "models", "--json", "--data-dir", str(data_dir))
    assert code == 0 and json.loads(out) == []


def test_added_folders_are_listed_until_removed(
    capsys: pytest.CaptureFixture[str], home: Path, data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "my models"
    folder.mkdir()
    model = write_tiny_gguf(folder / "mine.gguf", name="Mine")

    code, out, _ = run(capsys, "models", "--add-folder", str(folder), "--data-dir", str(data_dir))
    assert code == 0 and str(folder) in out

    code, out, _ = run(capsys, "models", "--json", "--data-dir", str(data_dir))
    (entry,) = json.loads(out)
    assert entry["path"] == str(model) and entry["source"] == "folder"
    assert entry["deletable"] is False

    code, out, _ = run(capsys, "models", "--folders", "--json", "--data-dir", str(data_dir))
    assert json.loads(out) == [str(folder.resolve())]

    code, out, _ = run(
        capsys, "models", "--remove-folder", str(folder), "--data-dir", str(data_dir)
    )
    assert code == 0 and "No folders added." in out
    code, out, _ = run(capsys, "models", "--json", "--data-dir", str(data_dir))
    assert json.loads(out) == []


def test_bad_folders_are_refused_with_a_message(
    capsys: pytest.CaptureFixture[str], home: Path, data_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "models", "--add-folder", str(tmp_path / "nope"), "--data-dir", str(data_dir)
    )
    assert code == 1 and "is not a folder" in err
    code, _, err = run(
        capsys, "models", "--remove-folder", str(tmp_path), "--data-dir", str(data_dir)
    )
    assert code == 1 and "not one of the library's folders" in err
