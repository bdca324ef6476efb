"""The offload planner on synthetic GPUs, and the out-of-memory retry loop on real loads.

This machine's llama.cpp is CPU-only, so the GPU is simulated where a GPU would act:
free memory is passed to the planner, and the loader fails above a layer count the way
llama.cpp does when cudaMalloc runs out. Everything else is the real code, and every
successful try is a real load of a tiny model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.core.errors import InsufficientMemoryError, LoadCancelled, ModelLoadError
from app.core.gguf_file import GGUFInfo, TensorSize, read_gguf_info
from app.core.inference.engine import Engine
from app.core.inference.gpu_fallback import (
    LoadAttempt,
    OffloadOutcome,
    Placement,
    load_with_fallback,
    looks_like_out_of_memory,
    plan_load,
    retry_layer_counts,
)
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.machine.hardware import total_memory
from app.core.machine.memory import estimate_memory, kv_cache_bytes
from app.core.machine.offload import model_layout, plan_for_layers, plan_offload
from tests.gguf_factory import write_sparse_huge_gguf, write_tiny_gguf

MiB = 2**20
GiB = 2**30
MARGIN = 512 * MiB
CUDA_OOM = (
    "llama.cpp could not load {name}: allocating 1234.00 MiB on device 0: cudaMalloc failed: "
    "out of memory. The file may be damaged or made for a newer llama.cpp; re-download it."
)


def synthetic_model(
    n_layer: int = 32,
    layer_bytes: int = 200 * MiB,
    table_bytes: int = 400 * MiB,
    tied_output: bool = False,
) -> GGUFInfo:
    """An 8B-like header: 32 blocks of 200 MiB, embedding and output tables of 400 MiB."""
    tensors = [TensorSize("token_embd.weight", table_bytes)]
    for block in range(n_layer):
        tensors.append(TensorSize(f"blk.{block}.attn_q.weight", layer_bytes // 4))
        tensors.append(TensorSize(f"blk.{block}.ffn_up.weight", layer_bytes - layer_bytes // 4))
    tensors.append(TensorSize("output_norm.weight", 16 * 1024))
    if not tied_output:
        tensors.append(TensorSize("output.weight", table_bytes))
    return GGUFInfo(
        path=Path("synthetic.gguf"),
        file_size=sum(t.n_bytes for t in tensors),
        version=3,
        architecture="llama",
        name="Synthetic 8B",
        n_params=8_000_000_000,
        quant="Q4_K_M",
        tensor_bytes=sum(t.n_bytes for t in tensors),
        context_length=32768,
        n_layer=n_layer,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        head_dim_k=128,
        head_dim_v=128,
        n_vocab=128_256,
        chat_template=None,
        bos_token=None,
        eos_token=None,
        split_count=1,
        n_ff=14336,
        tensors=tuple(tensors),
    )


MODEL = synthetic_model()
CTX = 8192
KV_PER_LAYER = kv_cache_bytes(MODEL, CTX) // MODEL.n_layer  # 32 MiB at f16
COMPUTE = estimate_memory(MODEL, CTX, flash_attn=True).compute
OUTPUT_UNIT = 400 * MiB + 16 * 1024
BLOCK_UNIT = 200 * MiB + KV_PER_LAYER


def vram_for(k: int) -> int:
    """GPU bytes of k units: the output layer first, then k - 1 blocks, plus compute."""
    return OUTPUT_UNIT + (k - 1) * BLOCK_UNIT + COMPUTE if k else 0


# ----- the layout -----


def test_layout_groups_tensors_by_block() -> None:
    layout = model_layout(MODEL)

    assert layout.layer_bytes == (200 * MiB,) * 32
    assert layout.input_bytes == 400 * MiB
    assert layout.output_bytes == layout.output_cpu_bytes == OUTPUT_UNIT
    assert layout.n_layers_total == 33


def test_tied_output_copies_the_embedding_table_to_the_gpu() -> None:
    layout = model_layout(synthetic_model(tied_output=True))

    assert layout.input_bytes == 400 * MiB  # stays on the CPU for the input
    assert layout.output_bytes == 400 * MiB + 16 * 1024  # and a copy goes with the output
    assert layout.output_cpu_bytes == 16 * 1024  # on the CPU the table is shared


def test_a_tied_output_is_not_counted_twice_on_the_cpu() -> None:
    tied = synthetic_model(tied_output=True)

    on_cpu = plan_offload(tied, CTX, devices_free=[], margin=MARGIN)

    weights_and_kv = tied.tensor_bytes + kv_cache_bytes(tied, CTX)
    assert on_cpu.expected_ram == weights_and_kv + COMPUTE + tied.n_vocab * 4


def test_layout_of_real_headers(tmp_path: Path, starter_model: Path) -> None:
    tiny = read_gguf_info(write_tiny_gguf(tmp_path / "tiny.gguf", n_layer=3))
    layout = model_layout(tiny)
    assert len(layout.layer_bytes) == 3
    assert layout.input_bytes + sum(layout.layer_bytes) + layout.output_bytes == (tiny.tensor_bytes)

    smol = read_gguf_info(starter_model)  # ties its output to token_embd
    smol_layout = model_layout(smol)
    assert smol_layout.n_layers_total == 31
    assert smol_layout.output_bytes > smol_layout.input_bytes > 0


def test_layout_without_tensor_sizes_is_even() -> None:
    bare = dataclasses.replace(MODEL, tensors=())
    layout = model_layout(bare)

    assert len(set(layout.layer_bytes)) == 1
    assert layout.input_bytes + sum(layout.layer_bytes) + layout.output_bytes <= bare.tensor_bytes


# ----- the planner -----


def test_everything_fits() -> None:
    plan = plan_offload(MODEL, CTX, devices_free=[24 * GiB], margin=MARGIN)

    assert plan.full and plan.n_gpu_layers == 33
    assert plan.vram_per_device == (vram_for(33),)
    assert plan.expected_ram == 400 * MiB + MODEL.n_vocab * 4  # input table and logits
    assert plan.tensor_split == ()
    assert plan.reason.startswith("All 33 layers fit on the GPU")


@pytest.mark.parametrize("k", [1, 2, 17, 32])
def test_the_largest_count_that_fits(k: int) -> None:
    free = vram_for(k) + MARGIN + BLOCK_UNIT - 1  # one byte short of k + 1

    plan = plan_offload(MODEL, CTX, devices_free=[free], margin=MARGIN)

    assert plan.n_gpu_layers == k
    assert plan.expected_vram == vram_for(k) <= free - MARGIN
    assert (
        plan.expected_ram
        > plan_offload(MODEL, CTX, devices_free=[24 * GiB], margin=MARGIN).expected_ram
    )
    assert f"{k} of 33 layers fit" in plan.reason
    assert f"the other {33 - k} run on the CPU" in plan.reason


def test_nothing_fits() -> None:
    plan = plan_offload(MODEL, CTX, devices_free=[vram_for(1) + MARGIN - 1], margin=MARGIN)

    assert plan.n_gpu_layers == 0
    assert plan.expected_vram == 0
    assert plan.expected_ram >= MODEL.tensor_bytes
    assert "Not even the output layer fits" in plan.reason


def test_no_gpu() -> None:
    plan = plan_offload(MODEL, CTX, devices_free=[], margin=MARGIN)

    assert plan.n_gpu_layers == 0
    assert "no GPU" in plan.reason


@pytest.mark.parametrize("margin", [0, 256 * MiB, 1 * GiB, 3 * GiB])
def test_the_margin_is_kept_free(margin: int) -> None:
    free = 6 * GiB

    plan = plan_offload(MODEL, CTX, devices_free=[free], margin=margin)

    assert plan.expected_vram <= free - margin
    assert vram_for(plan.n_gpu_layers + 1) > free - margin


def test_a_bigger_margin_fits_fewer_layers() -> None:
    small = plan_offload(MODEL, CTX, devices_free=[6 * GiB], margin=256 * MiB)
    large = plan_offload(MODEL, CTX, devices_free=[6 * GiB], margin=2 * GiB)

    assert large.n_gpu_layers < small.n_gpu_layers


def test_a_quantized_kv_cache_fits_more_layers() -> None:
    free = [8 * GiB]
    f16 = plan_offload(MODEL, 32768, "f16", "f16", free, MARGIN)
    q4 = plan_offload(MODEL, 32768, "q4_0", "q4_0", free, MARGIN)

    assert q4.n_gpu_layers > f16.n_gpu_layers
    assert q4.expected_vram <= free[0] - MARGIN


def test_a_longer_context_fits_fewer_layers() -> None:
    short = plan_offload(MODEL, 4096, devices_free=[8 * GiB], margin=MARGIN)
    long = plan_offload(MODEL, 32768, devices_free=[8 * GiB], margin=MARGIN)

    assert long.n_gpu_layers < short.n_gpu_layers


def test_two_gpus_split_by_room() -> None:
    free = [8 * GiB, 4 * GiB]

    plan = plan_offload(MODEL, CTX, devices_free=free, margin=MARGIN)

    assert plan.full
    assert len(plan.tensor_split) == 2 and plan.tensor_split[0] > plan.tensor_split[1] > 0
    assert sum(plan.layers_per_device) == 33
    assert plan.layers_per_device[0] > plan.layers_per_device[1]
    for used, room in zip(plan.vram_per_device, free, strict=True):
        assert used <= room - MARGIN
    assert "2 GPUs (split 0." in plan.reason


def test_two_gpus_hold_what_neither_holds_alone() -> None:
    free = [5 * GiB, 5 * GiB]

    alone = plan_offload(MODEL, CTX, devices_free=free[:1], margin=MARGIN)
    together = plan_offload(MODEL, CTX, devices_free=free, margin=MARGIN)

    assert not alone.full
    assert together.full
    assert together.tensor_split == (0.5, 0.5)


def test_a_gpu_too_small_for_the_compute_buffer_gets_no_layers() -> None:
    free = [10 * GiB, MARGIN + COMPUTE // 2]

    plan = plan_offload(MODEL, CTX, devices_free=free, margin=MARGIN)

    assert plan.tensor_split == (1.0, 0.0)
    assert plan.layers_per_device[1] == 0
    assert plan.vram_per_device[1] == 0


def test_plan_for_a_chosen_count_follows_llama_cpp_placement() -> None:
    only_output = plan_for_layers(MODEL, CTX, 1)
    all_layers = plan_for_layers(MODEL, CTX, -1)

    assert only_output.expected_vram == vram_for(1)
    assert all_layers.n_gpu_layers == 33 and all_layers.expected_vram == vram_for(33)
    assert plan_for_layers(MODEL, CTX, 99).n_gpu_layers == 33


# ----- the retry loop -----


def test_retry_counts_halve_then_fall_to_the_cpu() -> None:
    assert retry_layer_counts(33) == [33, 16, 8, 4, 0]
    assert retry_layer_counts(3) == [3, 1, 0]
    assert retry_layer_counts(1) == [1, 0]
    assert retry_layer_counts(0) == [0]


def test_out_of_memory_messages_are_recognised() -> None:
    for said in (
        "cudaMalloc failed: out of memory",
        "ggml_metal_buffer_init: error: failed to allocate buffer, size = 512.00 MiB",
        "vk::Device::allocateMemory: ErrorOutOfDeviceMemory",
        "unable to allocate CUDA0 buffer",
        "Device memory allocation of size 123 failed.",
    ):
        assert looks_like_out_of_memory(ModelLoadError(f"llama.cpp could not load x: {said}."))
    assert not looks_like_out_of_memory(ModelLoadError("unknown model architecture: 'foo'"))


class GpuThatFillsUp:
    """Loads for real, but fails like a full GPU when asked for more than `fits` layers."""

    def __init__(self, engine: Engine, fits: int) -> None:
        self.engine = engine
        self.fits = fits
        self.asked: list[LoadOptions] = []

    def __call__(self, path: Path, options: LoadOptions) -> LoadedModel:
        self.asked.append(options)
        assert options.n_gpu_layers is not None
        if options.n_gpu_layers > self.fits:
            raise ModelLoadError(CUDA_OOM.format(name=path.name), path=path)
        return self.engine.load(path, options, check_memory=False)


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def eight_layers(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "eight.gguf", n_layer=8)


def test_out_of_memory_retries_with_fewer_layers(engine: Engine, eight_layers: Path) -> None:
    gpu = GpuThatFillsUp(engine, fits=2)
    try:
        outcome = load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_ctx=256, n_threads=1),
            loader=gpu,
            devices_free=[24 * GiB],
            offload_supported=True,
        )
    finally:
        loaded = engine.loaded
        engine.close()

    assert [o.n_gpu_layers for o in gpu.asked] == [9, 4, 2]
    assert outcome.message == (
        "GPU out of memory at 9 and 4 layers; loaded with 2 of 9 layers on the GPU."
    )
    assert outcome.n_gpu_layers == 2 and outcome.n_layers_total == 9
    assert outcome.fell_back
    assert [a.error is None for a in outcome.attempts] == [False, False, True]
    assert "cudaMalloc failed" in str(outcome.attempts[0].error)
    assert outcome.placement == "GPU 2/9 + CPU"
    assert outcome.where == Placement(2, 9, 1)
    assert outcome.where.text == "GPU 2/9 + CPU"
    assert outcome.worth_telling
    assert loaded is outcome.loaded


def test_a_gpu_with_no_room_ends_on_the_cpu_and_says_so(engine: Engine, eight_layers: Path) -> None:
    gpu = GpuThatFillsUp(engine, fits=0)
    try:
        outcome = load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_ctx=256, n_gpu_layers=-1, n_threads=1),
            loader=gpu,
            offload_supported=True,
        )
    finally:
        engine.close()

    assert [o.n_gpu_layers for o in gpu.asked] == [9, 4, 2, 1, 0]
    assert outcome.message == (
        "GPU out of memory at 9, 4, 2 and 1 layers; loaded with every layer on the CPU."
    )
    assert outcome.placement == "CPU"
    assert gpu.asked[-1].tensor_split == ()


def test_what_fits_the_first_time_is_not_retried(engine: Engine, eight_layers: Path) -> None:
    gpu = GpuThatFillsUp(engine, fits=9)
    try:
        outcome = load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_ctx=256, n_threads=1),
            loader=gpu,
            devices_free=[24 * GiB],
            offload_supported=True,
        )
    finally:
        engine.close()

    assert len(gpu.asked) == 1
    assert not outcome.fell_back
    assert not outcome.worth_telling
    assert outcome.placement == "GPU 9/9"
    assert outcome.message.startswith("Loaded with all 9 layers on the GPU (about ")
    assert "All 9 layers fit on the GPU" in outcome.message


def test_a_planned_split_reaches_the_loader(engine: Engine, eight_layers: Path) -> None:
    gpu = GpuThatFillsUp(engine, fits=9)
    try:
        load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_ctx=256, n_threads=1),
            loader=gpu,
            devices_free=[2 * GiB, 1 * GiB],
            offload_supported=True,
        )
    finally:
        engine.close()

    [options] = gpu.asked
    assert len(options.tensor_split) == 2
    assert options.tensor_split[0] > options.tensor_split[1] > 0


def test_other_load_errors_are_not_retried(engine: Engine, eight_layers: Path) -> None:
    calls: list[int | None] = []

    def broken(path: Path, options: LoadOptions) -> LoadedModel:
        calls.append(options.n_gpu_layers)
        raise ModelLoadError("llama.cpp could not load x: unknown model architecture: 'foo'.")

    with pytest.raises(ModelLoadError, match="GPU layers tried: 9 of 9"):
        load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_gpu_layers=-1),
            loader=broken,
            offload_supported=True,
        )
    assert calls == [9]


def test_cancel_is_not_retried(engine: Engine, eight_layers: Path) -> None:
    calls: list[int | None] = []

    def cancelled(path: Path, options: LoadOptions) -> LoadedModel:
        calls.append(options.n_gpu_layers)
        raise LoadCancelled("Loading was cancelled.")

    with pytest.raises(LoadCancelled):
        load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_gpu_layers=5),
            loader=cancelled,
            offload_supported=True,
        )
    assert calls == [5]


def test_running_out_of_memory_on_the_cpu_too_is_an_error(
    engine: Engine, eight_layers: Path
) -> None:
    def no_memory(path: Path, options: LoadOptions) -> LoadedModel:
        raise ModelLoadError(CUDA_OOM.format(name=path.name))

    with pytest.raises(ModelLoadError, match=r"GPU layers tried: 2, 1, 0 of 9"):
        load_with_fallback(
            engine,
            eight_layers,
            LoadOptions(n_gpu_layers=2),
            loader=no_memory,
            offload_supported=True,
        )


def test_the_cpu_only_build_says_so(engine: Engine, eight_layers: Path) -> None:
    try:
        outcome = load_with_fallback(
            engine, eight_layers, LoadOptions(n_ctx=256, n_gpu_layers=5, n_threads=1)
        )
        assert engine.loaded is outcome.loaded
    finally:
        engine.close()

    assert outcome.n_gpu_layers == 0
    assert outcome.placement == "CPU"
    assert outcome.where.text == "CPU · 1 thread"
    assert outcome.worth_telling  # 5 GPU layers were asked for
    assert "cannot use a GPU" in outcome.message
    assert "you asked for 5 GPU layers" in outcome.message
    assert "hearth doctor" in outcome.message


def test_ram_for_the_cpu_part_is_checked_before_loading(engine: Engine, tmp_path: Path) -> None:
    huge = write_sparse_huge_gguf(tmp_path / "huge.gguf", tensor_bytes=2 * total_memory())
    calls: list[LoadOptions] = []

    def must_not_load(path: Path, options: LoadOptions) -> LoadedModel:
        calls.append(options)
        raise AssertionError("loaded a model that cannot fit")

    with pytest.raises(InsufficientMemoryError, match=r"stays on the CPU \(2 of 3 layers\)"):
        load_with_fallback(
            engine,
            huge,
            LoadOptions(n_ctx=1024),
            loader=must_not_load,
            devices_free=[plan_for_layers(read_gguf_info(huge), 1024, 1).expected_vram + MARGIN],
            offload_supported=True,
        )
    assert calls == []


def test_a_cpu_only_build_used_as_such_is_no_news(engine: Engine, eight_layers: Path) -> None:
    try:
        outcome = load_with_fallback(engine, eight_layers, LoadOptions(n_ctx=256, n_threads=2))
    finally:
        engine.close()
    assert not outcome.offload_supported
    assert not outcome.worth_telling
    assert outcome.where.text == "CPU · 2 threads"


def outcome_of(
    n_gpu_layers: int, requested: int | None, *, supported: bool = True
) -> OffloadOutcome:
    loaded = LoadedModel(MODEL, 4096, n_gpu_layers, 4, supported, False, "test")
    return OffloadOutcome(
        loaded,
        n_gpu_layers,
        33,
        (LoadAttempt(n_gpu_layers),),
        plan_for_layers(MODEL, 4096, n_gpu_layers),
        "",
        requested=requested,
        offload_supported=supported,
    )


@pytest.mark.parametrize(
    ("n_gpu_layers", "requested", "supported", "tell"),
    [
        (33, None, True, False),  # auto, all fit
        (20, None, True, False),  # auto, part fits: the status bar says so
        (0, None, True, True),  # a GPU build that ends on the CPU
        (0, None, False, False),  # a CPU-only build
        (0, 0, True, False),  # the CPU was asked for
        (20, 20, True, False),
        (33, -1, True, False),
        (0, -1, False, True),  # all asked for, none given
    ],
)
def test_what_is_worth_telling(
    n_gpu_layers: int, requested: int | None, supported: bool, tell: bool
) -> None:
    assert outcome_of(n_gpu_layers, requested, supported=supported).worth_telling is tell


def test_placement_text() -> None:
    assert Placement(0, 33, 2).text == "CPU · 2 threads"
    assert Placement(0, 33, 1).text == "CPU · 1 thread"
    assert Placement(33, 33, 8).text == "GPU 33/33"
    assert Placement(16, 33, 8).text == "GPU 16/33 + CPU"
    assert Placement(16, 33, 8).to_stats() == {
        "placement": "GPU 16/33 + CPU",
        "n_gpu_layers": 16,
        "n_layers_total": 33,
        "n_threads": 8,
    }


def test_placement_of_a_loaded_model() -> None:
    def loaded(layers: int, supported: bool) -> LoadedModel:
        return LoadedModel(MODEL, 4096, layers, 4, supported, False, "test")

    assert Placement.of(loaded(-1, True)) == Placement(33, 33, 4)
    assert Placement.of(loaded(10, True)) == Placement(10, 33, 4)
    assert Placement.of(loaded(10, False)) == Placement(0, 33, 4)


def test_plan_load_previews_the_first_try() -> None:
    auto = plan_load(MODEL, LoadOptions(n_ctx=CTX), [vram_for(20) + MARGIN])
    assert auto.n_gpu_layers == 20
    chosen = plan_load(MODEL, LoadOptions(n_ctx=CTX, n_gpu_layers=10), [vram_for(20) + MARGIN])
    assert (chosen.n_gpu_layers, chosen.expected_vram) == (10, vram_for(10))
    everything = plan_load(MODEL, LoadOptions(n_ctx=CTX, n_gpu_layers=-1), [])
    assert everything.n_gpu_layers == 33
    cpu_only = plan_load(
        MODEL, LoadOptions(n_ctx=CTX, n_gpu_layers=10), [24 * GiB], offload_supported=False
    )
    assert cpu_only.n_gpu_layers == 0 and cpu_only.expected_vram == 0
    quantized = plan_load(MODEL, LoadOptions(n_ctx=CTX, type_k="q8_0", type_v="q8_0"), [])
    assert quantized.expected_ram < plan_load(MODEL, LoadOptions(n_ctx=CTX), []).expected_ram


def test_plan_load_splits_a_chosen_count_by_free_memory_like_llama_cpp() -> None:
    options = LoadOptions(n_ctx=CTX, n_gpu_layers=33)
    even = plan_load(MODEL, options, [8 * GiB, 8 * GiB])
    assert even.layers_per_device in ((16, 17), (17, 16))
    given = plan_load(MODEL, dataclasses.replace(options, tensor_split=(3.0, 1.0)), [8 * GiB] * 2)
    assert given.layers_per_device[0] > 2 * given.layers_per_device[1]
