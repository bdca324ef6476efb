"""Load options saved per model: round trips, defaults, damaged files, atomic writes."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from app.core.inference.load_options import LoadOptions
from app.core.inference.load_options_store import SETTINGS_FILE_NAME, LoadOptionsStore, model_key

GPU_SETUP = LoadOptions(
    n_ctx=8192,
    n_gpu_layers=20,
    type_k="q8_0",
    type_v="q8_0",
    flash_attn="on",
    use_mlock=True,
    n_threads=6,
    main_gpu=1,
    tensor_split=(0.6, 0.4),
)


@pytest.fixture
def store(tmp_path: Path) -> LoadOptionsStore:
    return LoadOptionsStore(tmp_path / "config")


def test_nothing_saved(store: LoadOptionsStore, tmp_path: Path) -> None:
    assert store.get(tmp_path / "model.gguf") is None
    assert not store.path.exists()


def test_options_for_prefers_saved_then_default(store: LoadOptionsStore, tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    assert store.options_for(model) == LoadOptions()
    small = LoadOptions(n_ctx=1024, n_threads=1)
    assert store.options_for(model, small) is small
    store.set(model, GPU_SETUP)
    assert store.options_for(model, small) == GPU_SETUP


def test_round_trip(store: LoadOptionsStore, tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"

    store.set(model, GPU_SETUP)

    assert store.get(model) == GPU_SETUP
    assert LoadOptionsStore(store.path.parent).get(model) == GPU_SETUP  # from the file


def test_models_are_kept_apart(store: LoadOptionsStore, tmp_path: Path) -> None:
    store.set(tmp_path / "a.gguf", GPU_SETUP)
    store.set(tmp_path / "b.gguf", LoadOptions(n_ctx=2048))

    assert store.get(tmp_path / "a.gguf") == GPU_SETUP
    assert store.get(tmp_path / "b.gguf") == LoadOptions(n_ctx=2048)


def test_a_model_is_known_by_its_absolute_path(
    store: LoadOptionsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store.set("model.gguf", GPU_SETUP)

    assert store.get(tmp_path / "model.gguf") == GPU_SETUP
    assert model_key("model.gguf") == str(tmp_path.resolve() / "model.gguf")


def test_only_changed_options_are_stored(store: LoadOptionsStore, tmp_path: Path) -> None:
    store.set(tmp_path / "model.gguf", LoadOptions(n_ctx=2048, use_mmap=False))

    data = json.loads(store.path.read_text(encoding="utf-8"))
    assert data["models"] == {
        model_key(tmp_path / "model.gguf"): {"n_ctx": 2048, "use_mmap": False}
    }


def test_forget(store: LoadOptionsStore, tmp_path: Path) -> None:
    store.set(tmp_path / "model.gguf", GPU_SETUP)

    assert store.forget(tmp_path / "model.gguf")
    assert not store.forget(tmp_path / "model.gguf")
    assert store.get(tmp_path / "model.gguf") is None


def write_raw(store: LoadOptionsStore, text: str) -> None:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(text, encoding="utf-8")


def test_unknown_keys_are_ignored(store: LoadOptionsStore, tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    entry = {"n_ctx": 1024, "rope_scaling": "yarn", "from_a_future_version": [1, 2]}
    write_raw(store, json.dumps({"version": 7, "models": {model_key(model): entry}}))

    assert store.get(model) == LoadOptions(n_ctx=1024)


@pytest.mark.parametrize(
    "entry",
    [
        {"n_ctx": "lots"},
        {"n_ctx": 4096.5},
        {"use_mmap": "yes"},
        {"n_gpu_layers": True},
        {"type_k": "q3_k"},
        {"tensor_split": ["a", "b"]},
        {"flash_attn": "off", "type_v": "q4_0"},
    ],
)
def test_bad_values_drop_that_models_settings(
    store: LoadOptionsStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    entry: dict[str, object],
) -> None:
    model = tmp_path / "model.gguf"
    other = tmp_path / "other.gguf"
    models = {model_key(model): entry, model_key(other): {"n_ctx": 512}}
    write_raw(store, json.dumps({"version": 1, "models": models}))

    with caplog.at_level(logging.WARNING, logger="app.core.inference.load_options_store"):
        assert store.get(model) is None
    assert "ignoring the saved settings" in caplog.text
    assert store.get(other) == LoadOptions(n_ctx=512)


@pytest.mark.parametrize(
    "text", ["{not json", "", "[]", '{"models": 3}', '{"version": 1}', "\x00\x01"]
)
def test_a_damaged_file_reads_as_empty_and_is_kept_aside(
    store: LoadOptionsStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    write_raw(store, text)

    with caplog.at_level(logging.WARNING, logger="app.core.inference.load_options_store"):
        assert store.get(tmp_path / "model.gguf") is None
    assert "damaged" in caplog.text
    assert (store.path.parent / (SETTINGS_FILE_NAME + ".damaged")).read_text(
        encoding="utf-8"
    ) == text

    store.set(tmp_path / "model.gguf", GPU_SETUP)  # and saving works again
    assert store.get(tmp_path / "model.gguf") == GPU_SETUP


def test_a_failed_write_leaves_the_old_file(
    store: LoadOptionsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.gguf"
    store.set(model, GPU_SETUP)
    before = store.path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.set(model, LoadOptions(n_ctx=512))

    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == [SETTINGS_FILE_NAME]


def test_threads_saving_different_models_lose_nothing(
    store: LoadOptionsStore, tmp_path: Path
) -> None:
    models = [tmp_path / f"m{i}.gguf" for i in range(8)]
    threads = [
        threading.Thread(target=store.set, args=(m, LoadOptions(n_ctx=256 * (i + 1))))
        for i, m in enumerate(models)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [store.get(m) for m in models] == [LoadOptions(n_ctx=256 * (i + 1)) for i in range(8)]
