"""Memory estimates from GGUF headers, the fits check, and byte formatting."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from app.core.errors import InsufficientMemoryError, InvalidSettingError
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.machine.hardware import available_memory, default_threads, total_memory
from app.core.machine.memory import check_fits, estimate_memory
from app.core.units import format_bytes
from tests.gguf_factory import write_sparse_huge_gguf, write_tiny_gguf

GiB = 2**30

LLAMA3_8B_Q4_K_M = GGUFInfo(
    path=Path("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf"),
    file_size=4_920_734_016,
    version=3,
    architecture="llama",
    name="Llama 3 8B",
    n_params=8_030_261_248,
    quant="Q4_K_M",
    tensor_bytes=4_920_000_000,
    context_length=8192,
    n_layer=32,
    n_embd=4096,
    n_head=32,
    n_head_kv=8,
    head_dim_k=128,
    head_dim_v=128,
    n_vocab=128_256,
    chat_template=None,
    bos_token="<|begin_of_text|>",
    eos_token="<|eot_id|>",
    split_count=1,
)


@pytest.fixture
def tiny_info(tmp_path: Path) -> GGUFInfo:
    return read_gguf_info(write_tiny_gguf(tmp_path / "tiny.gguf"))


def test_kv_cache_of_the_tiny_model(tiny_info: GGUFInfo) -> None:
    # 2 layers x 256 tokens x 2 KV heads x (16 key + 16 value dims) x 2 bytes
    assert estimate_memory(tiny_info, 256).kv_cache == 2 * 256 * 2 * 32 * 2 == 65_536


def test_quantized_kv_cache(tiny_info: GGUFInfo) -> None:
    # q8_0 keys: 34 bytes per 32 values; q4_0 values: 18 bytes per 32 values
    expected = 2 * 256 * 2 * (16 * 34 // 32 + 16 * 18 // 32)

    assert estimate_memory(tiny_info, 256, type_k="q8_0", type_v="Q4_0").kv_cache == expected


def test_llama3_8b_kv_cache_at_8k_is_one_gib() -> None:
    assert estimate_memory(LLAMA3_8B_Q4_K_M, 8192).kv_cache == 1 * GiB


def test_estimate_parts_add_up(tiny_info: GGUFInfo) -> None:
    estimate = estimate_memory(tiny_info, 256)

    assert estimate.weights == tiny_info.tensor_bytes
    assert estimate.output == tiny_info.n_vocab * 4  # one row of float32 logits
    assert estimate.compute > 0
    assert estimate.total == (
        estimate.weights + estimate.kv_cache + estimate.compute + estimate.output
    )


def test_long_context_raises_the_compute_estimate() -> None:
    short = estimate_memory(LLAMA3_8B_Q4_K_M, 4096).compute
    long = estimate_memory(LLAMA3_8B_Q4_K_M, 32768).compute

    assert short < long


def test_flash_attention_drops_the_attention_scores() -> None:
    without = estimate_memory(LLAMA3_8B_Q4_K_M, 32768).compute
    with_flash = estimate_memory(LLAMA3_8B_Q4_K_M, 32768, flash_attn=True).compute
    quantized_v = estimate_memory(LLAMA3_8B_Q4_K_M, 32768, type_v="q8_0").compute

    assert with_flash == quantized_v < without


def test_the_context_is_padded_as_llama_cpp_allocates_it(tiny_info: GGUFInfo) -> None:
    assert estimate_memory(tiny_info, 100).kv_cache == estimate_memory(tiny_info, 256).kv_cache
    assert estimate_memory(LLAMA3_8B_Q4_K_M, 4097).kv_cache == (
        estimate_memory(LLAMA3_8B_Q4_K_M, 4352).kv_cache
    )


def test_a_short_context_caps_the_micro_batch() -> None:
    capped = estimate_memory(LLAMA3_8B_Q4_K_M, 128, n_batch=512).compute

    assert capped == estimate_memory(LLAMA3_8B_Q4_K_M, 128, n_batch=128).compute
    assert capped < estimate_memory(LLAMA3_8B_Q4_K_M, 512, n_batch=512).compute


def test_the_logits_set_the_compute_buffer_of_a_big_vocabulary() -> None:
    # 512 tokens x (128,256 logits + 3 x 4,096 activations) x 4 bytes
    compute = estimate_memory(LLAMA3_8B_Q4_K_M, 4096, flash_attn=True).compute

    assert compute == 512 * (128_256 + 3 * 4096) * 4


def test_zero_context_means_the_models_own(tiny_info: GGUFInfo) -> None:
    assert estimate_memory(tiny_info, 0) == estimate_memory(tiny_info, 256)


def test_unknown_kv_type(tiny_info: GGUFInfo) -> None:
    with pytest.raises(InvalidSettingError, match="q3_k"):
        estimate_memory(tiny_info, 256, type_k="q3_k")


def test_tiny_model_fits(tiny_info: GGUFInfo) -> None:
    estimate = check_fits(tiny_info, 256, available_memory())

    assert estimate == estimate_memory(tiny_info, 256)


def test_model_larger_than_ram_does_not_fit(tmp_path: Path) -> None:
    path = write_sparse_huge_gguf(tmp_path / "giant.gguf", tensor_bytes=total_memory() * 2)
    info = read_gguf_info(path)
    available = available_memory()

    with pytest.raises(InsufficientMemoryError) as caught:
        check_fits(info, 4096, available)

    error = caught.value
    assert error.path == path
    assert error.needed > total_memory() * 2
    assert error.available == available
    assert "Sparse Giant needs about" in error.message
    assert "4,096-token context" in error.message
    assert "Close other programs" in error.message
    assert "smaller context" not in error.message  # no context would make it fit


def test_too_long_context_suggests_one_that_fits() -> None:
    available = 8 * GiB

    with pytest.raises(InsufficientMemoryError) as caught:
        check_fits(LLAMA3_8B_Q4_K_M, 131_072, available)

    message = caught.value.message
    assert "only 8.0 GiB is free" in message
    suggested = re.search(r"about ([\d,]+) tokens would fit", message)
    assert suggested is not None
    n_ctx = int(suggested.group(1).replace(",", ""))
    assert estimate_memory(LLAMA3_8B_Q4_K_M, n_ctx).total <= available
    assert estimate_memory(LLAMA3_8B_Q4_K_M, n_ctx * 2).total > available
    assert "a smaller model" in message  # already a 4-bit quantization


def test_big_weights_suggest_a_smaller_quantization() -> None:
    f16 = dataclasses.replace(LLAMA3_8B_Q4_K_M, quant="F16", tensor_bytes=16_060_522_496)

    with pytest.raises(InsufficientMemoryError, match=r"smaller quantization \(e\.g\. Q4_K_M\)"):
        check_fits(f16, 4096, 8 * GiB)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (int(98.4 * 2**20), "98.4 MiB"),
        (2**20 - 1, "1.0 MiB"),
        (int(3.2 * GiB), "3.2 GiB"),
        (2**40, "1.0 TiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_memory_figures_are_plausible() -> None:
    total = total_memory()

    assert total > 256 * 2**20
    assert 0 < available_memory() <= total


def test_default_threads() -> None:
    threads = default_threads()

    assert 1 <= threads <= (os.cpu_count() or 1)
