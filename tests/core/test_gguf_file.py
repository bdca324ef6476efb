"""Reading and validating GGUF headers: good files described, bad files explained."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from app.core import gguf_file
from app.core.errors import ModelFileError, UnsupportedModelError
from app.core.gguf_file import known_architectures, read_gguf_info
from tests.gguf_factory import (
    CHATML_TEMPLATE,
    MIN_VOCAB,
    write_sparse_huge_gguf,
    write_tiny_gguf,
    write_truncated_copy,
)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny-model.gguf")


def _tiny_param_count(n_layer: int, n_embd: int, n_kv_width: int, n_ff: int, n_vocab: int) -> int:
    embeddings_and_output = 2 * n_vocab * n_embd + n_embd
    attention = 2 * n_embd * n_embd + 2 * n_kv_width * n_embd + n_embd
    feed_forward = 3 * n_ff * n_embd + n_embd
    return embeddings_and_output + n_layer * (attention + feed_forward)


def _error_for(path: Path) -> ModelFileError:
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    assert path.name in caught.value.message
    assert caught.value.path == path
    return caught.value


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def _value_offset(path: Path, key: str) -> int:
    """Offset of a scalar metadata value: after the key's text and its u32 type."""
    return path.read_bytes().index(key.encode()) + len(key) + 4


def _open_paths() -> set[str]:
    fd_dir = Path("/proc/self/fd")
    paths = set()
    for fd in os.listdir(fd_dir):
        try:
            paths.add(os.readlink(fd_dir / fd))
        except OSError:
            continue
    return paths


def test_describes_a_tiny_model(tiny: Path) -> None:
    info = read_gguf_info(tiny)

    assert info.path == tiny
    assert info.file_size == tiny.stat().st_size
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name == "Tiny Llama"
    assert (info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == (2, 64, 4, 2)
    assert (info.head_dim_k, info.head_dim_v) == (16, 16)
    assert info.context_length == 256
    assert info.n_vocab == MIN_VOCAB
    assert info.n_params == _tiny_param_count(2, 64, 32, 128, MIN_VOCAB)
    assert info.tensor_bytes == info.n_params * 4
    assert info.quant == "F32"
    assert info.chat_template is None
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.split_count == 1


def test_agrees_with_the_gguf_packages_reader(tiny: Path) -> None:
    reader = GGUFReader(tiny)
    try:
        params = sum(tensor.n_elements for tensor in reader.tensors)
        tensor_bytes = sum(int(tensor.n_bytes) for tensor in reader.tensors)
        n_tokens = len(reader.fields["tokenizer.ggml.tokens"].data)
    finally:
        del reader

    info = read_gguf_info(str(tiny))

    assert (info.n_params, info.tensor_bytes, info.n_vocab) == (params, tensor_bytes, n_tokens)


def test_f16_model_with_a_chat_template(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "chat.gguf", dtype="f16", chat_template=CHATML_TEMPLATE)

    info = read_gguf_info(path)

    n_norm_weights = 64 * (1 + 2 * 2)  # output_norm, and attn_norm and ffn_norm per layer
    assert info.quant == "F16"
    assert info.tensor_bytes == (info.n_params - n_norm_weights) * 2 + n_norm_weights * 4
    assert info.chat_template == CHATML_TEMPLATE


def test_quant_name_comes_from_the_file_type(tiny: Path) -> None:
    _patch(tiny, _value_offset(tiny, "general.file_type"), struct.pack("<I", 15))

    assert read_gguf_info(tiny).quant == "Q4_K_M"


@pytest.mark.parametrize("file_type", [1024, 999])
def test_quant_name_falls_back_to_the_tensor_types(tmp_path: Path, file_type: int) -> None:
    path = write_tiny_gguf(tmp_path / "f16.gguf", dtype="f16")
    _patch(path, _value_offset(path, "general.file_type"), struct.pack("<I", file_type))

    assert read_gguf_info(path).quant == "F16"


def test_first_shard_of_a_split_model_is_described(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "model-00001-of-00003.gguf", split_count=3)

    assert read_gguf_info(path).split_count == 3


def test_sparse_huge_file_is_complete_and_huge(tmp_path: Path) -> None:
    path = write_sparse_huge_gguf(tmp_path / "giant.gguf", tensor_bytes=8 * 2**30)

    info = read_gguf_info(path)

    assert info.tensor_bytes >= 8 * 2**30
    assert info.file_size >= info.tensor_bytes


def test_file_is_closed_after_reading(tiny: Path, tmp_path: Path) -> None:
    truncated = write_truncated_copy(tiny, tmp_path / "cut.gguf", 0.5)

    read_gguf_info(tiny)
    with pytest.raises(ModelFileError):
        read_gguf_info(truncated)

    open_paths = _open_paths()
    assert str(tiny.resolve()) not in open_paths
    assert str(truncated.resolve()) not in open_paths


def test_known_architectures() -> None:
    names = known_architectures()

    assert {"llama", "qwen2", "gemma3", "phi3"} <= names
    assert "clip" not in names


def test_missing_file(tmp_path: Path) -> None:
    error = _error_for(tmp_path / "nowhere.gguf")

    assert "does not exist" in error.message
    assert "pick the model again" in error.message


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "model.gguf"
    folder.mkdir()

    assert "folder" in _error_for(folder).message


def test_unreadable_file(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gguf_file, "open", refuse, raising=False)

    assert "permission denied" in _error_for(tiny).message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()

    assert "empty" in _error_for(path).message


def test_file_too_short_for_a_header(tmp_path: Path) -> None:
    path = tmp_path / "stub.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")

    assert "too short" in _error_for(path).message


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.gguf"
    path.write_bytes(bytes([0xFE, 0x01]) + np.random.RandomState(1).bytes(4094))

    assert "not a GGUF file" in _error_for(path).message


def test_zip_file_renamed(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.gguf"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")

    assert "ZIP archive" in _error_for(path).message


def test_html_page_renamed(tmp_path: Path) -> None:
    path = tmp_path / "download.gguf"
    path.write_text("\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")

    message = _error_for(path).message
    assert "web page" in message
    assert "download" in message.lower()


def test_safetensors_renamed(tmp_path: Path) -> None:
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path = tmp_path / "model.gguf"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")

    assert "safetensors" in _error_for(path).message


def test_git_lfs_pointer(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1\n"
    )

    assert "Git LFS" in _error_for(path).message


def test_unsupported_version(tiny: Path) -> None:
    _patch(tiny, 4, struct.pack("<I", 99))

    error = _error_for(tiny)
    assert isinstance(error, UnsupportedModelError)
    assert "version 99" in error.message


def test_big_endian_file(tiny: Path) -> None:
    _patch(tiny, 4, struct.pack(">I", 3))

    error = _error_for(tiny)
    assert isinstance(error, UnsupportedModelError)
    assert "big-endian" in error.message


def test_unknown_metadata_type_is_a_damaged_header(tiny: Path) -> None:
    _patch(tiny, _value_offset(tiny, "general.architecture") - 4, struct.pack("<I", 77))

    assert "damaged header" in _error_for(tiny).message


def test_absurd_string_length_is_a_damaged_header(tiny: Path) -> None:
    _patch(tiny, 24, struct.pack("<Q", 2**62))  # length of the first metadata key

    assert "damaged header" in _error_for(tiny).message


def test_truncated_download_says_how_much_is_missing(tiny: Path, tmp_path: Path) -> None:
    reader = GGUFReader(tiny)
    try:
        data_end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    finally:
        del reader
    truncated = write_truncated_copy(tiny, tmp_path / "partial.gguf", 0.5)
    missing = data_end - truncated.stat().st_size

    message = _error_for(truncated).message

    assert f"{missing:,} bytes missing" in message
    assert "download it again" in message


def test_file_cut_inside_its_header(tiny: Path, tmp_path: Path) -> None:
    truncated = write_truncated_copy(tiny, tmp_path / "stub.gguf", 0.005)

    assert "ends inside its header" in _error_for(truncated).message


def test_unknown_architecture(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "foo-model.gguf", arch="foo")

    error = _error_for(path)
    assert isinstance(error, UnsupportedModelError)
    assert "'foo' is not an architecture this version of llama.cpp knows" in error.message
    assert "update Hearth or pick another model" in error.message


def test_vision_projector_is_not_a_chat_model(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "mmproj-model-f16.gguf", arch="clip")

    error = _error_for(path)
    assert isinstance(error, UnsupportedModelError)
    assert "vision projector" in error.message
