"""Header values that make no sense: refused when llama.cpp would crash, else warned about."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFValueType

from app.core.errors import ModelFileError
from app.core.gguf_file import read_gguf_info
from tests.gguf_factory import MIN_VOCAB, write_tiny_gguf
from tests.gguf_fuzz import set_kv

U32, F32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32


def _write(tmp_path: Path, key: str, value: object, vtype: GGUFValueType, **kwargs: object) -> Path:
    sub = U32 if isinstance(value, list) else None
    edit = set_kv(key, value, GGUFValueType.ARRAY if sub else vtype, sub)
    return write_tiny_gguf(tmp_path / "odd.gguf", edit=edit, **kwargs)  # type: ignore[arg-type]


def test_a_sound_model_has_no_warnings(tmp_path: Path) -> None:
    assert read_gguf_info(write_tiny_gguf(tmp_path / "fine.gguf")).warnings == ()


@pytest.mark.parametrize("base", [0.0, -10000.0, float("nan"), float("inf")])
def test_a_rope_base_that_is_not_a_positive_number_is_named(tmp_path: Path, base: float) -> None:
    warnings = read_gguf_info(_write(tmp_path, "llama.rope.freq_base", base, F32)).warnings
    assert len(warnings) == 1
    assert "odd.gguf" in warnings[0] and f"llama.rope.freq_base = {base}" in warnings[0]


@pytest.mark.parametrize("which", ["bos", "eos"])
@pytest.mark.parametrize("token", [MIN_VOCAB, 2**31 - 1])
def test_special_tokens_outside_the_vocabulary_are_named(
    tmp_path: Path, which: str, token: int
) -> None:
    key = f"tokenizer.ggml.{which}_token_id"
    warnings = read_gguf_info(_write(tmp_path, key, token, U32)).warnings
    assert len(warnings) == 1
    assert f"{key} = {token}" in warnings[0] and f"only {MIN_VOCAB:,} tokens" in warnings[0]


def test_a_token_id_of_minus_one_means_none_and_is_no_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, "tokenizer.ggml.bos_token_id", 2**32 - 1, U32)
    assert read_gguf_info(path).warnings == ()


def test_a_layer_without_query_heads_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "llama.attention.head_count", [4, 0], U32)
    (warning,) = read_gguf_info(path).warnings
    assert "llama.attention.head_count = 0 for layer 1" in warning


def test_recurrent_architectures_may_have_layers_without_attention(tmp_path: Path) -> None:
    path = _write(tmp_path, "jamba.attention.head_count_kv", [2, 0], U32, arch="jamba")
    assert read_gguf_info(path).warnings == ()


@pytest.mark.parametrize(
    ("key", "value", "vtype", "said"),
    [
        ("llama.block_count", 0, U32, "llama.block_count = 0"),
        ("llama.block_count", 2**31, U32, "1 to 512 layers"),
        ("llama.attention.layer_norm_rms_epsilon", -1.0, F32, "epsilon = -1.0"),
        ("llama.attention.layer_norm_rms_epsilon", float("nan"), F32, "epsilon = nan"),
        ("llama.attention.head_count_kv", [2, 0], U32, "layer 1 has query heads"),
    ],
)
def test_values_that_crash_llama_cpp_are_refused_by_key(
    tmp_path: Path, key: str, value: object, vtype: GGUFValueType, said: str
) -> None:
    path = _write(tmp_path, key, value, vtype)
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    message = caught.value.message
    assert "odd.gguf" in message and said in message and "crash" in message
    assert "\n" not in message
