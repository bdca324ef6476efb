"""llama.cpp's model and context parameters from Hearth's `LoadOptions`: one home for the
mapping, used by the engine and by the API server's batch context."""

from __future__ import annotations

import ctypes
from typing import Any, Literal

import llama_cpp

from app.core.inference.load_options import LoadOptions

GGML_TYPES = {
    "f32": llama_cpp.GGML_TYPE_F32,
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q5_1": llama_cpp.GGML_TYPE_Q5_1,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0,
    "q4_1": llama_cpp.GGML_TYPE_Q4_1,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
    "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL,
}
FLASH_ATTN = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}
_LOAD_MODES = {
    (True, False): llama_cpp.LLAMA_LOAD_MODE_MMAP,
    (True, True): llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK,
    (False, True): llama_cpp.LLAMA_LOAD_MODE_MLOCK,
    (False, False): llama_cpp.LLAMA_LOAD_MODE_NONE,
}


def model_params(options: LoadOptions, n_gpu_layers: int) -> tuple[Any, Any]:
    """`llama_model_params` for these options, and an object the caller must keep alive
    until the load returns (the tensor split array the params point to)."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    params.load_mode = _LOAD_MODES[(options.use_mmap, options.use_mlock)]
    params.main_gpu = options.main_gpu
    params.use_extra_bufts = options.use_extra_bufts
    split = (ctypes.c_float * llama_cpp.llama_max_devices())(*options.tensor_split)
    if options.tensor_split:
        params.tensor_split = split
    return params, split


def context_params(
    options: LoadOptions | None,
    n_ctx: int,
    n_threads: int,
    flash_attn: Literal["auto", "on", "off"],
    *,
    n_seq_max: int = 1,
    n_batch: int | None = None,
) -> Any:
    """`llama_context_params` for a context of `n_ctx` tokens (per sequence times
    `n_seq_max`) with these options' batch sizes and KV cache types."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    batch = n_batch if n_batch is not None else (options.n_batch if options else 512)
    params.n_batch = batch
    params.n_ubatch = min(options.n_ubatch, batch) if options else batch
    params.n_seq_max = n_seq_max
    params.n_threads = n_threads
    params.n_threads_batch = (options.n_threads_batch if options else None) or n_threads
    params.flash_attn_type = FLASH_ATTN[flash_attn]
    if options is not None:
        params.type_k = GGML_TYPES[options.type_k]
        params.type_v = GGML_TYPES[options.type_v]
    params.no_perf = True
    return params
