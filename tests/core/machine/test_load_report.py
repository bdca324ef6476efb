"""Reading buffer sizes from llama.cpp's log lines: this build's, older builds' and GPU ones."""

from __future__ import annotations

import logging
import threading

from app.core.logs import llama_logger
from app.core.machine.load_report import MIB, capture_buffers, parse_buffer_lines

CPU_LOAD = [
    "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB",
    "llama_context:        CPU  output buffer size =     0.19 MiB",
    "llama_kv_cache:        CPU KV buffer size =    45.00 MiB",
    "llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  1/1 seqs), "
    "K (f16):   22.50 MiB, V (f16):   22.50 MiB",
    "sched_reserve:        CPU compute buffer size =   102.51 MiB",
    "load: token to piece cache size = 0.3170 MB",
]

CUDA_PARTIAL_LOAD = [
    "load_tensors: offloaded 16/33 layers to GPU",
    "load_tensors:        CUDA0 model buffer size =  2048.00 MiB",
    "load_tensors:   CPU_Mapped model buffer size =  2500.25 MiB",
    "llama_kv_cache:      CUDA0 KV buffer size =   256.00 MiB",
    "llama_kv_cache:        CPU KV buffer size =   256.00 MiB",
    "llama_context:  CUDA_Host  output buffer size =     0.49 MiB",
    "sched_reserve:      CUDA0 compute buffer size =   258.50 MiB",
    "sched_reserve:  CUDA_Host compute buffer size =    16.01 MiB",
]


def mib(value: float) -> int:
    return round(value * MIB)


def test_cpu_load_lines() -> None:
    measured = parse_buffer_lines(CPU_LOAD)

    assert measured.model == {"CPU_Mapped": mib(92.10)}
    assert measured.kv_cache == {"CPU": mib(45.00)}
    assert measured.compute == {"CPU": mib(102.51)}
    assert measured.output == {"CPU": mib(0.19)}
    assert measured.kv_cells == 2048
    assert measured.offloaded_layers is None
    assert measured.device_bytes == 0
    assert measured.host_bytes == measured.total


def test_partial_gpu_load_separates_vram_from_ram() -> None:
    measured = parse_buffer_lines(CUDA_PARTIAL_LOAD)

    assert measured.offloaded_layers == (16, 33)
    assert measured.device_bytes == mib(2048.00) + mib(256.00) + mib(258.50)
    assert measured.host_bytes == mib(2500.25) + mib(256.00) + mib(0.49) + mib(16.01)
    assert measured.weights_total == mib(2048.00) + mib(2500.25)


def test_older_builds_lines() -> None:
    measured = parse_buffer_lines(
        [
            "llm_load_tensors:        CPU buffer size =  4437.80 MiB",
            "llama_new_context_with_model: KV self size  =  512.00 MiB, K (f16):  256.00 MiB",
            "llama_new_context_with_model:        CPU compute buffer size =   258.50 MiB",
        ]
    )

    assert measured.model == {"CPU": mib(4437.80)}
    assert measured.kv_cache == {"total": mib(512.00)}
    assert measured.compute == {"CPU": mib(258.50)}


def test_a_precise_size_refines_only_the_matching_rounded_one() -> None:
    measured = parse_buffer_lines(
        [
            # a context freed before this load began: nothing to refine yet
            "~llama_context:        CPU compute buffer size is 64.0000 MiB, matches expectation",
            "sched_reserve:        CPU compute buffer size =     0.63 MiB",
            "~llama_context:        CPU compute buffer size is 0.6250 MiB, matches expectation",
        ]
    )

    assert measured.compute == {"CPU": 655_360}


def test_nothing_found() -> None:
    measured = parse_buffer_lines(["llama_model_loader: loaded meta data", ""])

    assert not measured.found
    assert measured.total == 0


def test_capture_hears_llama_cpp_lines_from_another_thread() -> None:
    llama_logger.setLevel(logging.WARNING)  # as in a process that never set up logging
    try:
        with capture_buffers() as capture:
            worker = threading.Thread(
                target=lambda: [llama_logger.info("%s", line) for line in CPU_LOAD]
            )
            worker.start()
            worker.join()
        llama_logger.info("%s", "sched_reserve:  CPU compute buffer size =  1.00 MiB")
    finally:
        level_after = llama_logger.level
        llama_logger.setLevel(logging.NOTSET)

    assert capture.result() == parse_buffer_lines(CPU_LOAD)
    assert level_after == logging.WARNING  # restored
