"""The local model library over real GGUF files: sources, grouping, fit, cache, delete."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.errors import HearthError, ModelFileError
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.machine.load_verdicts import LoadVerdict, LoadVerdicts, file_key
from app.core.machine.memory import estimate_memory
from app.core.models.library import (
    HEADER_CACHE_FILE_NAME,
    LibraryError,
    LibraryFolders,
    LibraryModel,
    MachineMemory,
    delete_model,
    fit_verdict,
    local_models,
    resolve_model,
    scan_library,
)
from app.core.models.library_headers import default_context
from app.core.models.model_sources import source_roots
from app.core.models.provenance import Origin, read_origins, record_origin
from app.core.models.starter import STARTER
from app.core.paths import AppPaths, app_paths
from tests.core.models.test_model_sources import add_hf_cache_file, add_ollama_model
from tests.gguf_factory import CHATML_TEMPLATE, write_tiny_gguf, write_truncated_copy

GiB = 2**30
PLENTY = MachineMemory(ram_available=64 * GiB)


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return app_paths(tmp_path / "hearth").ensure()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty fake home: no other apps unless a test builds them."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def scan(paths: AppPaths, home: Path, **kwargs: object) -> list[LibraryModel]:
    options: dict[str, object] = {
        "roots": source_roots(home, env={}, platform="linux"),
        "machine": PLENTY,
        "verdicts": verdicts(paths),
    }
    options.update(kwargs)
    return scan_library(paths, **options)  # type: ignore[arg-type]


def verdicts(paths: AppPaths) -> LoadVerdicts:
    """The load verdicts `scan` reads (a folder of the test's own)."""
    return LoadVerdicts(paths.cache / "verdicts")


def mark_loads(paths: AppPaths, path: Path) -> None:
    """Record that the load probe loaded `path` (as `checked_options` does)."""
    verdicts(paths).put(file_key(path, "test build", gpu=False), LoadVerdict("ok"))


def by_name(models: list[LibraryModel]) -> dict[str, LibraryModel]:
    return {m.name: m for m in models}


def test_models_folder_entries_describe_their_headers(paths: AppPaths, home: Path) -> None:
    (paths.models / "sub").mkdir()
    f32 = write_tiny_gguf(
        paths.models / "sub" / "alpha.gguf",
        name="Alpha",
        context_length=512,
        chat_template=CHATML_TEMPLATE,
    )
    f16 = write_tiny_gguf(paths.models / "beta.gguf", name="Beta", dtype="f16")
    mark_loads(paths, f32)

    models = scan(paths, home)

    assert [m.name for m in models] == ["Alpha", "Beta"]
    alpha, beta = models
    info = read_gguf_info(f32)
    assert alpha.path == f32 and alpha.files == (f32,)
    assert (alpha.architecture, alpha.quant, alpha.context_length) == ("llama", "F32", 512)
    assert alpha.n_params == info.n_params > 0
    assert alpha.size_bytes == f32.stat().st_size
    assert alpha.has_chat_template and not beta.has_chat_template
    assert beta.quant == "F16" and beta.path == f16
    assert alpha.source == beta.source == "hearth"
    assert not alpha.deletable and alpha.repo_id is None
    assert alpha.problem is None and not alpha.is_projector
    assert alpha.memory_needed == estimate_memory(info, 512).total
    assert alpha.fit == "fits"
    assert beta.fit == "untried"  # it fits in memory, but was never loaded yet
    assert local_models(paths) == [f16, f32]


def test_to_dict_is_json_with_the_contract_fields(paths: AppPaths, home: Path) -> None:
    path = write_tiny_gguf(paths.models / "tiny.gguf")
    data = json.loads(json.dumps(scan(paths, home)[0].to_dict()))
    assert set(data) == {
        "path", "name", "architecture", "n_params", "quant", "size_bytes", "context_length",
        "has_chat_template", "is_projector", "source", "deletable", "repo_id", "fit",
        "memory_needed", "files", "problem", "warnings",
    }  # fmt: skip
    assert data["path"] == str(path) and data["files"] == [str(path)]


def test_starter_is_listed_as_starter_and_deletable(
    paths: AppPaths, home: Path, starter_model: Path
) -> None:
    target = paths.models / STARTER.filename
    os.link(starter_model, target)

    (model,) = scan(paths, home)

    assert model.source == "starter" and model.deletable
    assert model.quant == "Q4_1" and model.architecture == "llama"
    assert model.context_length == read_gguf_info(starter_model).context_length
    assert model.has_chat_template
    delete_model(paths, model)
    assert not target.exists() and starter_model.is_file()


def test_recorded_download_is_deletable_and_delete_removes_files_and_record(
    paths: AppPaths, home: Path
) -> None:
    folder = paths.models / "hub" / "owner" / "repo"
    folder.mkdir(parents=True)
    mine = write_tiny_gguf(folder / "mine.gguf", name="Mine")
    keep = write_tiny_gguf(paths.models / "keep.gguf", name="Keep", seed=3)
    record_origin(paths.models, mine, Origin(kind="download", repo_id="owner/repo"))

    models = by_name(scan(paths, home))

    assert models["Mine"].deletable and models["Mine"].repo_id == "owner/repo"
    assert not models["Keep"].deletable
    delete_model(paths, models["Mine"])
    assert not mine.exists() and not (paths.models / "hub").exists()
    assert keep.is_file()
    assert mine.resolve() not in read_origins(paths.models)
    assert [m.name for m in scan(paths, home)] == ["Keep"]


def test_delete_refuses_models_hearth_did_not_make(
    paths: AppPaths, home: Path, tmp_path: Path
) -> None:
    copied = write_tiny_gguf(paths.models / "copied.gguf", name="Copied")
    outside = write_tiny_gguf(tmp_path / "outside.gguf", name="Outside")
    (model,) = scan(paths, home)

    with pytest.raises(LibraryError, match="not downloaded or made by Hearth"):
        delete_model(paths, model)
    forged = replace(model, deletable=True)
    with pytest.raises(LibraryError, match="no record"):
        delete_model(paths, forged)
    elsewhere = replace(model, path=outside, files=(outside,), deletable=True)
    with pytest.raises(LibraryError, match="outside Hearth's models folder"):
        delete_model(paths, elsewhere)
    # A symlink in the models folder to a file elsewhere: the real file is outside.
    link = paths.models / "link.gguf"
    link.symlink_to(outside)
    with pytest.raises(LibraryError, match="outside"):
        delete_model(paths, replace(model, path=link, files=(link,), deletable=True))
    assert copied.is_file() and outside.is_file() and link.is_symlink()
    assert issubclass(LibraryError, HearthError)


def test_other_apps_models_are_listed_but_never_deletable(
    paths: AppPaths, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    source = write_tiny_gguf(tmp_path / "src" / "t.gguf", name="From Ollama")
    projector = write_tiny_gguf(tmp_path / "src" / "p.gguf", arch="clip", seed=4)
    blob = add_ollama_model(home / ".ollama" / "models", "tiny", "3b", source, projector=projector)
    lms = home / ".lmstudio" / "models" / "pub" / "lms.gguf"
    lms.parent.mkdir(parents=True)
    write_tiny_gguf(lms, name="LM Model", seed=5)

    models = by_name(scan(paths, home))

    ollama = models["tiny:3b"]
    assert ollama.path == blob and ollama.source == "ollama"
    assert ollama.architecture == "llama" and ollama.problem is None
    assert models["tiny:3b (projector)"].is_projector
    assert models["LM Model"].source == "lmstudio"
    for model in models.values():
        assert not model.deletable
        with pytest.raises(LibraryError):
            delete_model(paths, model)
    assert blob.is_file() and lms.is_file()
    assert scan(paths, home, include_other_apps=False) == []


def test_hf_cache_models_carry_their_repo_and_appear_once(
    paths: AppPaths, home: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "hf-cache"
    (tmp_path / "src").mkdir()
    source = write_tiny_gguf(tmp_path / "src" / "q.gguf", name="Cached")
    newer = add_hf_cache_file(cache, "owner/Cached-GGUF", "cached-Q8.gguf", source, "a" * 40)
    add_hf_cache_file(cache, "owner/Cached-GGUF", "cached-Q8.gguf", source, "b" * 40)
    roots = source_roots(home, env={"HF_HUB_CACHE": str(cache)}, platform="linux")

    (model,) = scan(paths, home, roots=roots)

    assert model.source == "huggingface" and model.repo_id == "owner/Cached-GGUF"
    assert model.path.parent.parent.name == "snapshots" and model.path.name == "cached-Q8.gguf"
    assert model.path.resolve() == newer.resolve()
    assert not model.deletable


def test_a_file_reachable_twice_is_listed_once(paths: AppPaths, home: Path, tmp_path: Path) -> None:
    model_file = write_tiny_gguf(paths.models / "one.gguf", name="One")
    added = tmp_path / "added"
    added.mkdir()
    (added / "alias.gguf").symlink_to(model_file)
    os.link(model_file, added / "hardlinked-copy-is-a-different-path.gguf")

    models = scan(paths, home, extra_folders=[added, added])

    # The symlink is the same file; a hard link is another path, listed on its own.
    assert sorted((m.source, m.path.name) for m in models) == [
        ("folder", "hardlinked-copy-is-a-different-path.gguf"),
        ("hearth", "one.gguf"),
    ]


def test_added_folders_are_scanned_by_default(paths: AppPaths, home: Path, tmp_path: Path) -> None:
    added = tmp_path / "added"
    added.mkdir()
    write_tiny_gguf(added / "x.gguf", name="Added")
    folders = LibraryFolders(paths.config)
    assert scan(paths, home) == []
    folders.add(added)
    (model,) = scan(paths, home)
    assert model.source == "folder" and not model.deletable
    folders.remove(added)
    assert scan(paths, home) == []


def test_library_folders_are_saved_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "config"
    folders = LibraryFolders(config)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert folders.list() == []
    folders.add(first)
    folders.add(second)
    folders.add(first)
    assert LibraryFolders(config).list() == [first.resolve(), second.resolve()]
    with pytest.raises(LibraryError, match="not a folder"):
        folders.add(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(LibraryError, match="not a folder"):
        folders.add(tmp_path / "file.txt")
    folders.remove(first)
    assert folders.list() == [second.resolve()]
    with pytest.raises(LibraryError, match="not one of the library's folders"):
        folders.remove(first)
    (config / "library_folders.json").write_text("{damaged")
    assert folders.list() == []


def test_damaged_files_are_listed_with_their_problem(
    paths: AppPaths, home: Path, tmp_path: Path
) -> None:
    good = write_tiny_gguf(tmp_path / "good.gguf")
    write_truncated_copy(good, paths.models / "truncated.gguf", 0.5)
    (paths.models / "page.gguf").write_text("<!doctype html><html>login</html>")
    (paths.models / "empty.gguf").write_bytes(b"")
    write_tiny_gguf(paths.models / "alien.gguf", arch="notarealarch", name="Alien")
    write_tiny_gguf(paths.models / "fine.gguf", name="Fine")

    models = by_name(scan(paths, home))

    assert set(models) == {"truncated", "page", "empty", "alien", "Fine"}
    for name in ("truncated", "page", "empty", "alien"):
        model = models[name]
        with pytest.raises(ModelFileError) as caught:
            read_gguf_info(model.path)
        assert model.problem == str(caught.value)
        assert model.fit == "unknown" and model.memory_needed == 0
    assert "incomplete" in (models["truncated"].problem or "")
    assert models["Fine"].problem is None


def test_split_models_are_one_entry_with_summed_size(paths: AppPaths, home: Path) -> None:
    folder = paths.models / "split"
    folder.mkdir()
    first = write_tiny_gguf(folder / "big-00001-of-00003.gguf", name="Big", split_count=3)
    rest = [
        write_tiny_gguf(folder / f"big-0000{i}-of-00003.gguf", seed=i, name="part") for i in (3, 2)
    ]
    lone = write_tiny_gguf(folder / "lone-00002-of-00002.gguf", name="Lone")
    write_tiny_gguf(folder / "gap-00001-of-00002.gguf", name="Gap", split_count=2)

    models = by_name(scan(paths, home))

    big = models["Big"]
    assert big.path == first
    assert big.files == (first, rest[1], rest[0])
    assert big.size_bytes == sum(f.stat().st_size for f in big.files)
    assert big.problem is None
    info = read_gguf_info(first)
    extra = rest[0].stat().st_size + rest[1].stat().st_size
    assert big.memory_needed == estimate_memory(info, default_context(256)).total + extra
    assert big.n_params > info.n_params
    assert "first part" in (models["lone"].problem or "") and models["lone"].files == (lone,)
    assert "Part 2 of 2 of the split model 'gap' is missing" in (models["Gap"].problem or "")
    assert len(models) == 3


def test_projectors_are_marked_not_broken(paths: AppPaths, home: Path) -> None:
    write_tiny_gguf(paths.models / "vision-proj.gguf", arch="clip", name="Clip Projector")
    write_tiny_gguf(paths.models / "mmproj-model-f16.gguf", name="Named Projector")
    write_tiny_gguf(paths.models / "model.gguf", name="Chat Model")

    models = by_name(scan(paths, home))

    clip = models["Clip Projector"]
    assert clip.is_projector and clip.problem is None and clip.architecture == "clip"
    assert clip.quant == "F32" and clip.n_params > 0
    assert models["Named Projector"].is_projector
    for projector in (clip, models["Named Projector"]):
        assert projector.fit == "unknown" and projector.memory_needed == 0
    assert not models["Chat Model"].is_projector


@pytest.mark.parametrize(
    ("needed", "ram", "vram", "verdict"),
    [
        (800, 1000, (), "fits"),
        (801, 1000, (), "tight"),
        (1000, 1000, (), "tight"),
        (1001, 1000, (), "too_big"),
        (1500, 1000, (1000,), "fits"),
        (1900, 1000, (500, 500), "tight"),
        (0, 1000, (), "unknown"),
        (10, 0, (), "unknown"),
    ],
)
def test_fit_verdict_thresholds(needed: int, ram: int, vram: tuple[int, ...], verdict: str) -> None:
    assert fit_verdict(needed, ram, vram) == verdict


def test_fit_follows_the_machine_it_is_given(paths: AppPaths, home: Path) -> None:
    mark_loads(paths, write_tiny_gguf(paths.models / "m.gguf", context_length=8192))
    (generous,) = scan(paths, home)
    needed = generous.memory_needed
    info = read_gguf_info(paths.models / "m.gguf")
    assert needed == estimate_memory(info, 4096).total
    assert generous.fit == "fits"
    assert scan(paths, home, machine=MachineMemory(needed))[0].fit == "tight"
    assert scan(paths, home, machine=MachineMemory(needed // 2))[0].fit == "too_big"
    split_memory = MachineMemory(needed // 2, (needed // 2,))
    assert scan(paths, home, machine=split_memory)[0].fit == "tight"
    assert scan(paths, home, machine=MachineMemory(0))[0].fit == "unknown"


class CountingReader:
    """read_gguf_info that counts its calls."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> GGUFInfo:
        self.paths.append(path)
        return read_gguf_info(path)


def test_second_scan_reads_no_headers(paths: AppPaths, home: Path) -> None:
    for i in range(3):
        write_tiny_gguf(paths.models / f"m{i}.gguf", name=f"M{i}", seed=i)
    (paths.models / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 10)
    reader = CountingReader()

    first = scan(paths, home, read_header=reader)
    assert len(reader.paths) == 4
    assert (paths.cache / HEADER_CACHE_FILE_NAME).is_file()

    second = scan(paths, home, read_header=reader)
    assert len(reader.paths) == 4
    assert second == first

    changed = write_tiny_gguf(paths.models / "m1.gguf", name="Changed", n_embd=32, seed=9)
    (paths.models / "m2.gguf").unlink()
    third = by_name(scan(paths, home, read_header=reader))
    assert reader.paths[4:] == [changed]
    assert set(third) == {"M0", "Changed", "bad"}


def test_damaged_header_cache_is_ignored(paths: AppPaths, home: Path) -> None:
    write_tiny_gguf(paths.models / "m.gguf", name="M")
    cache_file = paths.cache / HEADER_CACHE_FILE_NAME
    for damage in ("{not json", '{"version": 1, "files": []}', "[]", '{"version": 1}'):
        cache_file.write_text(damage)
        reader = CountingReader()
        assert [m.name for m in scan(paths, home, read_header=reader)] == ["M"]
        assert len(reader.paths) == 1
    entries = json.loads(cache_file.read_text())["files"]
    for entry in entries.values():
        entry["facts"] = {"no_such_field": 1}
    cache_file.write_text(json.dumps({"version": 1, "files": entries}))
    reader = CountingReader()
    assert [m.name for m in scan(paths, home, read_header=reader)] == ["M"]
    assert len(reader.paths) == 1


def test_a_reader_that_crashes_does_not_stop_the_scan(paths: AppPaths, home: Path) -> None:
    write_tiny_gguf(paths.models / "a.gguf", name="A")
    write_tiny_gguf(paths.models / "b.gguf", name="B")

    def flaky(path: Path) -> GGUFInfo:
        if path.name == "a.gguf":
            raise RuntimeError("disk hiccup")
        return read_gguf_info(path)

    models = by_name(scan(paths, home, read_header=flaky))
    assert "disk hiccup" in (models["a"].problem or "")
    assert models["B"].problem is None


def test_resolve_model_finds_models_folder_files_and_other_sources(
    paths: AppPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_home = tmp_path / "resolve-home"
    fake_home.mkdir()
    for variable in ("HF_HUB_CACHE", "HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("XDG_DATA_HOME", str(fake_home / "data"))
    local = write_tiny_gguf(paths.models / "Local-Model.gguf")
    (tmp_path / "src").mkdir()
    source = write_tiny_gguf(tmp_path / "src" / "s.gguf")
    blob = add_ollama_model(tmp_path / "ollama", "smol", "135m", source)

    assert resolve_model("local-model", paths) == local
    assert resolve_model("local", paths) == local
    assert resolve_model("smol:135m", paths) == blob
    with pytest.raises(ModelFileError, match="No model named 'nothing'"):
        resolve_model("nothing", paths)
    assert resolve_model(str(local), paths) == local


def test_missing_models_folder_is_an_empty_library(tmp_path: Path, home: Path) -> None:
    paths = app_paths(tmp_path / "fresh")
    assert scan(paths, home) == []
    shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
