"""A GPU that runs out of memory, for a CPU-only llama.cpp: the worker's `GpuStandIn`.

Loads above `fits` GPU layers fail the way llama.cpp reports a failed cudaMalloc; the
others really load the model (on the CPU, since this build has no GPU).
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.core.errors import ModelLoadError
from app.core.host.engine_host import EngineHost
from app.core.inference.engine import ProgressCallback
from app.core.inference.gpu_fallback import Loader
from app.core.inference.load_options import LoadedModel, LoadOptions
from app.workers.inference import GpuStandIn

GiB = 2**30
CUDA_OOM = (
    "llama.cpp could not load {name}: allocating 1234.00 MiB on device 0: cudaMalloc failed: "
    "out of memory. The file may be damaged or made for a newer llama.cpp; re-download it."
)


class FullGpu:
    """Makes loaders that fail above `fits` GPU layers; records the counts asked for."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.asked: list[int | None] = []
        self._lock = threading.Lock()

    def stand_in(self, free: int = 24 * GiB) -> GpuStandIn:
        """For `InferenceThread(gpu_stand_in=...)`: one GPU with `free` bytes free."""
        return GpuStandIn(
            make_loader=self.make_loader, devices_free=(free,), offload_supported=True
        )

    def make_loader(
        self, engine: EngineHost, progress: ProgressCallback, cancel: threading.Event, _check: bool
    ) -> Loader:
        def load(path: Path, options: LoadOptions) -> LoadedModel:
            with self._lock:
                self.asked.append(options.n_gpu_layers)
            if (options.n_gpu_layers or 0) > self.fits:
                raise ModelLoadError(CUDA_OOM.format(name=path.name), path=path)
            return engine.load(path, options, progress=progress, cancel=cancel, check_memory=False)

        return load
