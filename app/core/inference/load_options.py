"""How a model is loaded (`LoadOptions`) and what a load resolved to (`LoadedModel`).

Plain data, importable without llama.cpp, so the UI and the CLI can build and show options
before the engine exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.core.errors import InvalidSettingError
from app.core.machine.memory import KV_TYPE_BYTES

if TYPE_CHECKING:  # the header reader pulls in numpy and gguf: not needed to build options
    from app.core.gguf_file import GGUFInfo

KV_CACHE_TYPES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
"""KV cache element types llama.cpp accepts for `type_k` / `type_v`."""
FLASH_ATTN_MODES = ("auto", "on", "off")


def _max_devices() -> int:
    import llama_cpp  # only when a tensor split is given: the UI need not load llama.cpp

    return int(llama_cpp.llama_max_devices())


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. `None` means "pick a good value for this machine"."""

    n_ctx: int = 4096
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: Literal["auto", "on", "off"] = "auto"
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool = True
    use_mlock: bool = False
    use_extra_bufts: bool = True
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.n_ctx < 0:
            raise InvalidSettingError(
                f"context length must be 0 (model's own) or more (got {self.n_ctx})"
            )
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise InvalidSettingError("batch sizes must be at least 1")
        for name in ("n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidSettingError(f"threads must be at least 1 (got {value})")
        for kv in (self.type_k, self.type_v):
            if kv not in KV_CACHE_TYPES or kv not in KV_TYPE_BYTES:
                raise InvalidSettingError(
                    f"unknown KV cache type {kv!r}; use one of {', '.join(sorted(KV_CACHE_TYPES))}"
                )
        if self.flash_attn not in FLASH_ATTN_MODES:
            raise InvalidSettingError(
                f"flash attention must be auto, on or off (got {self.flash_attn!r})"
            )
        if self.type_v not in ("f16", "f32") and self.flash_attn == "off":
            raise InvalidSettingError(
                f"a quantized V cache ({self.type_v}) needs flash attention; turn it on or use f16"
            )
        if self.main_gpu < 0:
            raise InvalidSettingError(
                f"the main GPU is a device number from 0 (got {self.main_gpu})"
            )
        if self.tensor_split and (
            min(self.tensor_split) < 0
            or sum(self.tensor_split) <= 0
            or len(self.tensor_split) > _max_devices()
        ):
            raise InvalidSettingError(
                f"tensor split needs one share of 0 or more per GPU, not all 0 "
                f"(got {list(self.tensor_split)})"
            )


@dataclass(frozen=True)
class LoadedModel:
    """What was loaded and how.

    `options` are the load options llama.cpp was given (KV cache types, flash attention,
    mmap...); `n_ctx`, `n_gpu_layers` and `n_threads` are what they resolved to.
    """

    info: GGUFInfo
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    gpu_offload_supported: bool
    template_is_fallback: bool
    build: str
    flash_attn: Literal["auto", "on", "off"] = "auto"
    options: LoadOptions | None = None


def effective_flash_attn(options: LoadOptions, n_gpu_layers: int) -> Literal["auto", "on", "off"]:
    """What "auto" flash attention should mean for this load.

    llama.cpp's auto turns flash attention on for the CPU too, where this build's kernel is
    slower: with SmolLM2-135M on 2 cores, time to first token on turn 10 of a chat (1,609
    cached tokens) was 206 ms with it and 149 ms without, and decode at that context 50.0
    against 54.9 tokens/s. So a CPU-only load turns it off, unless a quantized V cache
    needs it; with GPU layers llama.cpp decides.
    """
    if options.flash_attn != "auto":
        return options.flash_attn
    if options.type_v not in ("f16", "f32"):
        return "on"
    return "off" if n_gpu_layers == 0 else "auto"
