"""Load a model on the GPU, retrying with fewer layers when the GPU runs out of memory.

The outcome always says where the model ended up and why: a CPU-only build, a plan that
fits only some layers, or an out-of-memory failure and the retry that worked. Nothing
falls back to the CPU silently.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from app.core.errors import InsufficientMemoryError, ModelLoadError
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.core.machine.hardware import available_memory, gpu_free_memory, gpu_offload_supported
from app.core.machine.offload import DEFAULT_MARGIN, OffloadPlan, plan_for_layers, plan_offload
from app.core.units import format_bytes

if TYPE_CHECKING:  # the engine (and llama.cpp) load only where a model does, not on import
    from app.core.inference.engine import ProgressCallback

log = logging.getLogger(__name__)

Loader = Callable[[Path, LoadOptions], LoadedModel]
"""Loads a model with these options (normally `Engine.load`); raises `ModelLoadError`."""


class ModelLoading(Protocol):
    """What loads a model: an `Engine`, or the engine host that runs one in a child."""

    def load(
        self,
        path: Path | str,
        options: LoadOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        check_memory: bool = True,
    ) -> LoadedModel: ...


_FALLBACK_CONTEXT = 4096  # Engine.load's context when neither options nor header say

MAX_HALVINGS = 3
"""How often the GPU layers are halved after out-of-memory failures before the CPU alone
is tried."""

_OUT_OF_MEMORY = re.compile(
    r"out of (device )?memory|outofdevicememory|(failed|unable) to allocate|"
    r"allocation\b.*\bfailed|malloc failed|not enough memory|insufficient memory",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LoadAttempt:
    """One try: the GPU layers asked for and, if it failed, what llama.cpp said."""

    n_gpu_layers: int
    error: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where a model runs: GPU layers of all (llama.cpp's count) and CPU threads."""

    n_gpu_layers: int
    n_layers_total: int
    n_threads: int

    @classmethod
    def of(cls, loaded: LoadedModel) -> Placement:
        """What a `LoadedModel` says of itself (-1 GPU layers: all of them)."""
        total = loaded.info.n_layer + 1
        layers = loaded.n_gpu_layers if loaded.gpu_offload_supported else 0
        return cls(total if layers < 0 else min(layers, total), total, loaded.n_threads)

    @property
    def text(self) -> str:
        """For the status bar and a reply's stats: "CPU · 2 threads", "GPU 33/33" or
        "GPU 16/33 + CPU"."""
        if self.n_gpu_layers <= 0:
            return f"CPU · {self.n_threads} thread{'s' if self.n_threads != 1 else ''}"
        layers = f"GPU {self.n_gpu_layers}/{self.n_layers_total}"
        return layers if self.n_gpu_layers >= self.n_layers_total else layers + " + CPU"

    def to_stats(self) -> dict[str, int | str]:
        """The fields a reply's stored stats carry (`reply_summary` shows "placement")."""
        return {
            "placement": self.text,
            "n_gpu_layers": self.n_gpu_layers,
            "n_layers_total": self.n_layers_total,
            "n_threads": self.n_threads,
        }


@dataclass(frozen=True)
class OffloadOutcome:
    """A loaded model, where its layers went, and a sentence saying so.

    `requested` is the `n_gpu_layers` the options asked for (None: plan it), and
    `offload_supported` whether the build could use a GPU at all.
    """

    loaded: LoadedModel
    n_gpu_layers: int
    n_layers_total: int
    attempts: tuple[LoadAttempt, ...]
    plan: OffloadPlan
    message: str
    requested: int | None = None
    offload_supported: bool = True

    @property
    def fell_back(self) -> bool:
        """Whether a first try failed and fewer layers were used."""
        return len(self.attempts) > 1

    @property
    def worth_telling(self) -> bool:
        """Whether the person should be told `message` rather than only see the placement:
        a retry after running out of GPU memory, fewer GPU layers than asked for, or a
        GPU build that ended up on the CPU. A CPU-only build used as such is no news."""
        if self.fell_back:
            return True
        if self.requested is not None and self.requested != 0:
            wanted = self.n_layers_total if self.requested < 0 else self.requested
            return self.n_gpu_layers < min(wanted, self.n_layers_total)
        return self.requested is None and self.offload_supported and self.n_gpu_layers == 0

    @property
    def where(self) -> Placement:
        """Where the model runs, with the CPU threads it uses."""
        return Placement(self.n_gpu_layers, self.n_layers_total, self.loaded.n_threads)

    @property
    def placement(self) -> str:
        """Short text for a status bar: "GPU 33/33", "GPU 16/33 + CPU" or "CPU"."""
        if self.n_gpu_layers <= 0:
            return "CPU"
        layers = f"GPU {self.n_gpu_layers}/{self.n_layers_total}"
        return layers if self.n_gpu_layers >= self.n_layers_total else layers + " + CPU"


def looks_like_out_of_memory(error: BaseException) -> bool:
    """Whether a load error reads like a failed memory allocation (CUDA, Metal, Vulkan)."""
    return bool(_OUT_OF_MEMORY.search(str(error)))


def retry_layer_counts(first: int) -> list[int]:
    """Layer counts to try in turn: `first`, then halvings (at most `MAX_HALVINGS`), then 0."""
    counts = [first]
    while counts[-1] > 1 and len(counts) <= MAX_HALVINGS:
        counts.append(counts[-1] // 2)
    if counts[-1] != 0:
        counts.append(0)
    return counts


def load_with_fallback(
    engine: ModelLoading,
    path: Path | str,
    options: LoadOptions | None = None,
    *,
    loader: Loader | None = None,
    devices_free: Sequence[int] | None = None,
    offload_supported: bool | None = None,
    margin: int = DEFAULT_MARGIN,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    check_memory: bool = True,
) -> OffloadOutcome:
    """Load `path` into `engine` with as many GPU layers as fit, retrying with fewer on an
    out-of-memory failure.

    `options.n_gpu_layers` None plans the count from the GPUs' free memory; a number
    (-1: all) is tried as given. Every retry is logged, and the outcome's message says
    what happened ("GPU out of memory at 33 layers; loaded with 16 of 33 layers on the
    GPU").

    Args:
        engine: The engine to load into.
        path: The GGUF file.
        options: Load options; `n_gpu_layers` and `tensor_split` are decided here.
        loader: What loads (tests inject one that fails above some layer count); by
            default `engine.load` with `progress`, `cancel` and `check_memory`.
        devices_free: Free bytes per GPU; by default asked of ggml.
        offload_supported: Whether the build can offload; by default asked of llama.cpp.
        margin: Bytes kept free on each GPU when planning.
        progress: Load progress callback (of each try).
        cancel: Set to cancel loading.
        check_memory: Refuse models that will not fit in RAM (only the part that stays
            on the CPU counts when layers go to the GPU).

    Raises:
        ModelLoadError: Loading failed for a reason other than GPU memory, or even on the
            CPU only; the message lists the counts tried.
        ModelFileError, InsufficientMemoryError, LoadCancelled: As `Engine.load`.
    """
    path = Path(path)
    options = options or LoadOptions()
    info = read_gguf_info(path)
    costs = _CostModel(info, options)
    total = costs.of(0).n_layers_total
    load = loader or _engine_loader(engine, progress, cancel, check_memory)
    supported = gpu_offload_supported() if offload_supported is None else offload_supported
    if not supported:
        loaded = load(path, dataclasses.replace(options, n_gpu_layers=0, tensor_split=()))
        asked = options.n_gpu_layers not in (None, 0)
        message = (
            "This llama.cpp build cannot use a GPU, so every layer runs on the CPU"
            + (f" (you asked for {options.n_gpu_layers} GPU layers)" if asked else "")
            + ". `hearth doctor` says how to install a GPU build."
        )
        return OffloadOutcome(
            loaded,
            0,
            total,
            (LoadAttempt(0),),
            costs.of(0),
            message,
            requested=options.n_gpu_layers,
            offload_supported=False,
        )

    if options.n_gpu_layers is None:
        free = list(gpu_free_memory() if devices_free is None else devices_free)
        plan = costs.plan(free, margin)
        first, split, planned = plan.n_gpu_layers, plan.tensor_split, plan.reason
    else:
        first = total if options.n_gpu_layers < 0 else min(options.n_gpu_layers, total)
        split, planned = options.tensor_split, ""

    attempts: list[LoadAttempt] = []
    for k in retry_layer_counts(first):
        try_options = dataclasses.replace(options, n_gpu_layers=k, tensor_split=split if k else ())
        cost = costs.of(k, try_options.tensor_split)
        if check_memory and k:
            _check_host_memory(info, cost)
        try:
            loaded = load(path, try_options)
        except ModelLoadError as exc:
            tried = [*attempts, LoadAttempt(k, str(exc))]
            if k == 0 or not looks_like_out_of_memory(exc):
                counts = ", ".join(str(a.n_gpu_layers) for a in tried)
                raise ModelLoadError(
                    f"{exc} GPU layers tried: {counts} of {total}.", path=path
                ) from exc
            log.warning("GPU out of memory with %d of %d layers: %s", k, total, exc)
            attempts = tried
            continue
        attempts.append(LoadAttempt(k))
        message = _describe(k, total, attempts, planned, cost)
        log.info("%s", message)
        return OffloadOutcome(
            loaded, k, total, tuple(attempts), cost, message, requested=options.n_gpu_layers
        )
    raise AssertionError("retry_layer_counts always ends with 0")  # pragma: no cover


def plan_load(
    info: GGUFInfo,
    options: LoadOptions,
    devices_free: Sequence[int],
    *,
    offload_supported: bool = True,
    margin: int = DEFAULT_MARGIN,
) -> OffloadPlan:
    """What `load_with_fallback` tries first with these options (before any retry): the
    planned or chosen GPU layers and the memory they take, for a preview.

    A chosen count without a tensor split is split by the GPUs' free memory, as llama.cpp
    splits it.

    Raises:
        InvalidSettingError: An unknown KV type or a context below 1.
    """
    costs = _CostModel(info, options)
    if not offload_supported:
        return costs.of(0)
    if options.n_gpu_layers is None:
        return costs.plan(devices_free, margin)
    total = costs.of(0).n_layers_total
    k = total if options.n_gpu_layers < 0 else min(options.n_gpu_layers, total)
    split = tuple(options.tensor_split)
    if not split and len(devices_free) > 1 and sum(devices_free) > 0:
        split = tuple(free / sum(devices_free) for free in devices_free)  # as llama.cpp does
    return costs.of(k, split if k else ())


class _CostModel:
    """The planner's figures for one model and set of options."""

    def __init__(self, info: GGUFInfo, options: LoadOptions) -> None:
        n_ctx = options.n_ctx or info.context_length or _FALLBACK_CONTEXT
        if info.context_length:
            n_ctx = min(n_ctx, info.context_length)  # as Engine.load does
        self._info = info
        self._n_ctx = n_ctx
        self._options = options
        self._flash = options.flash_attn != "off"

    def of(self, k: int, split: Sequence[float] = ()) -> OffloadPlan:
        """What `k` GPU layers cost."""
        o = self._options
        return plan_for_layers(
            self._info,
            self._n_ctx,
            k,
            o.type_k,
            o.type_v,
            split,
            n_batch=o.n_ubatch,
            flash_attn=self._flash,
        )

    def plan(self, devices_free: Sequence[int], margin: int) -> OffloadPlan:
        """The most layers that fit these GPUs."""
        o = self._options
        return plan_offload(
            self._info,
            self._n_ctx,
            o.type_k,
            o.type_v,
            devices_free,
            margin,
            n_batch=o.n_ubatch,
            flash_attn=self._flash,
        )


def _check_host_memory(info: GGUFInfo, cost: OffloadPlan) -> None:
    available = available_memory()
    if cost.expected_ram <= available:
        return
    raise InsufficientMemoryError(
        f"{info.name} needs about {format_bytes(cost.expected_ram)} of RAM for the part "
        f"that stays on the CPU ({cost.n_layers_total - cost.n_gpu_layers} of "
        f"{cost.n_layers_total} layers), but only {format_bytes(available)} is free. "
        "Close other programs, choose a smaller context or a smaller model.",
        path=info.path,
        needed=cost.expected_ram,
        available=available,
    )


def _engine_loader(
    engine: ModelLoading,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    check_memory: bool,
) -> Loader:
    def load(path: Path, options: LoadOptions) -> LoadedModel:
        # Engine.load checks the whole model against RAM; with layers on the GPU only the
        # rest needs RAM, which load_with_fallback checks itself.
        on_cpu_only = options.n_gpu_layers == 0
        return engine.load(
            path,
            options,
            progress=progress,
            cancel=cancel,
            check_memory=check_memory and on_cpu_only,
        )

    return load


def _describe(
    k: int, total: int, attempts: Sequence[LoadAttempt], planned: str, plan: OffloadPlan
) -> str:
    failed = [str(a.n_gpu_layers) for a in attempts if a.error is not None]
    if k >= total:
        where = f"all {total} layers on the GPU"
    elif k:
        where = f"{k} of {total} layers on the GPU"
    else:
        where = "every layer on the CPU"
    if failed:
        at = failed[0] if len(failed) == 1 else f"{', '.join(failed[:-1])} and {failed[-1]}"
        return f"GPU out of memory at {at} layers; loaded with {where}."
    vram = f" (about {format_bytes(plan.expected_vram)} of GPU memory)" if k else ""
    if planned:
        return f"Loaded with {where}{vram}. {planned}"
    if k == 0:
        return "Loaded with every layer on the CPU: GPU layers are set to 0."
    return f"Loaded with {where}{vram}, as set."
