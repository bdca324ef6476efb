"""How many layers to put on the GPU: a pure function of the model, the context and the
devices' free memory.

llama.cpp counts n_layer + 1 offloadable units: the repeating blocks and the output layer
(output norm and output matrix). With `n_gpu_layers = k` the output layer goes first, then
the last k - 1 blocks; `k = n_layer + 1` offloads everything. The input embedding table
always stays on the CPU. A block's KV cache lives where the block does. With several
devices the offloaded units are cut in order by the `tensor_split` proportions.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.machine.memory import MemoryEstimate, estimate_memory, kv_cache_bytes
from app.core.units import format_bytes

if TYPE_CHECKING:
    from app.core.gguf_file import GGUFInfo

DEFAULT_MARGIN = 512 * 2**20
"""Bytes kept free on each GPU for the driver, the math libraries' workspaces and other
programs (llama.cpp's buffers are not all there is)."""

_BLOCK = re.compile(r"blk\.(\d+)\.")
_OUTPUT_PREFIXES = ("output.", "output_norm.")
_TIED_OUTPUT_SOURCE = "token_embd.weight"


@dataclass(frozen=True)
class ModelLayout:
    """A model's weight bytes by offload unit.

    `input_bytes` stay on the CPU; `layer_bytes[i]` is block i; `output_bytes` is the
    output layer. A model without its own output matrix reuses the embedding table, which
    llama.cpp copies to the GPU with the output layer: `output_bytes` then includes it,
    while on the CPU the output layer only adds `output_cpu_bytes` (the table is shared).
    """

    input_bytes: int
    layer_bytes: tuple[int, ...]
    output_bytes: int
    output_cpu_bytes: int

    @property
    def n_layers_total(self) -> int:
        """Offloadable units: the blocks and the output layer."""
        return len(self.layer_bytes) + 1


@dataclass(frozen=True)
class OffloadPlan:
    """Where a model's layers go and what that costs. Bytes are expected usage.

    `n_gpu_layers` is the value for `LoadOptions.n_gpu_layers`, counting the output layer
    as llama.cpp does (so `n_layers_total` is the model's n_layer + 1). `tensor_split`
    holds the proportions for several GPUs, and is empty for one.
    """

    n_gpu_layers: int
    n_layers_total: int
    tensor_split: tuple[float, ...]
    layers_per_device: tuple[int, ...]
    vram_per_device: tuple[int, ...]
    expected_ram: int
    reason: str

    @property
    def expected_vram(self) -> int:
        """GPU memory on all devices together."""
        return sum(self.vram_per_device)

    @property
    def full(self) -> bool:
        """Whether every layer is on a GPU."""
        return self.n_gpu_layers >= self.n_layers_total


def model_layout(info: GGUFInfo) -> ModelLayout:
    """Group the model's tensors into offload units by name (`blk.N.` is block N).

    A header without tensor sizes (a hand-made `GGUFInfo`) is split evenly: the embedding
    table and the output matrix each n_vocab x n_embd at the file's average bits per
    weight, and the blocks sharing the rest.
    """
    if not info.tensors:
        return _even_layout(info)
    blocks = [0] * info.n_layer
    input_bytes = output_bytes = 0
    has_output_matrix = False
    tied_bytes = 0
    for tensor in info.tensors:
        match = _BLOCK.match(tensor.name)
        if match is not None and int(match.group(1)) < info.n_layer:
            blocks[int(match.group(1))] += tensor.n_bytes
        elif tensor.name.startswith(_OUTPUT_PREFIXES):
            output_bytes += tensor.n_bytes
            has_output_matrix = has_output_matrix or tensor.name.startswith("output.")
        else:
            input_bytes += tensor.n_bytes
            if tensor.name == _TIED_OUTPUT_SOURCE:
                tied_bytes = tensor.n_bytes
    shared = 0 if has_output_matrix else tied_bytes
    return ModelLayout(input_bytes, tuple(blocks), output_bytes + shared, output_bytes)


def _even_layout(info: GGUFInfo) -> ModelLayout:
    bytes_per_param = info.tensor_bytes / info.n_params if info.n_params else 0.0
    table = min(round(info.n_vocab * info.n_embd * bytes_per_param), info.tensor_bytes // 3)
    rest = info.tensor_bytes - 2 * table
    n_layer = max(info.n_layer, 1)
    return ModelLayout(table, tuple([rest // n_layer] * info.n_layer), table, table)


def plan_offload(
    info: GGUFInfo,
    n_ctx: int,
    type_k: str = "f16",
    type_v: str = "f16",
    devices_free: Sequence[int] = (),
    margin: int = DEFAULT_MARGIN,
    *,
    n_batch: int = 512,
    flash_attn: bool = True,
) -> OffloadPlan:
    """The most layers that fit in the GPUs' free memory, keeping `margin` bytes spare
    on each.

    A device holding any layer also holds a compute buffer (see `estimate_memory`). With
    several devices the split is proportional to what each can hold, and the count is the
    largest whose llama.cpp placement fits every device.

    Args:
        info: The model's header.
        n_ctx: Context length in tokens (0: the model's own).
        type_k: KV cache type of keys.
        type_v: KV cache type of values.
        devices_free: Free bytes of each GPU, in llama.cpp's device order; empty for none.
        margin: Bytes to leave free on each GPU.
        n_batch: Tokens per micro-batch (n_ubatch), which sizes the compute buffer.
        flash_attn: Whether flash attention will be on (llama.cpp's "auto" turns it on
            where the GPU supports it).

    Raises:
        InvalidSettingError: An unknown KV type or a context below 1.
    """
    layout = model_layout(info)
    total = layout.n_layers_total
    n_ctx = n_ctx or info.context_length
    estimate = estimate_memory(info, n_ctx, type_k, type_v, n_batch, flash_attn=flash_attn)
    costs = _Costs(layout, kv_cache_bytes(info, n_ctx, type_k, type_v), estimate)
    usable = [max(free - margin, 0) for free in devices_free]
    split = _split_for(usable, estimate.compute)
    if not devices_free:
        return costs.plan(0, (), "llama.cpp sees no GPU it can use: every layer runs on the CPU.")
    for k in range(total, 0, -1):
        per_device = costs.placement(k, split)
        if all(used <= room for (_, used), room in zip(per_device, usable, strict=True)):
            return costs.plan(k, split, _reason(k, total, devices_free, margin, split))
    needed = max(used for _, used in costs.placement(1, ()))
    where = "the GPU" if len(devices_free) == 1 else "any GPU"
    return costs.plan(
        0,
        (),
        f"Not even the output layer fits on {where}: it needs {format_bytes(needed)} with "
        f"the compute buffer, {_free_text(devices_free)} and {format_bytes(margin)} is kept "
        "spare; every layer runs on the CPU.",
    )


def plan_for_layers(
    info: GGUFInfo,
    n_ctx: int,
    n_gpu_layers: int,
    type_k: str = "f16",
    type_v: str = "f16",
    tensor_split: Sequence[float] = (),
    *,
    n_batch: int = 512,
    flash_attn: bool = True,
) -> OffloadPlan:
    """What a chosen layer count costs (for a manual setting or a retry); -1 means all."""
    layout = model_layout(info)
    total = layout.n_layers_total
    k = total if n_gpu_layers < 0 else min(n_gpu_layers, total)
    n_ctx = n_ctx or info.context_length
    estimate = estimate_memory(info, n_ctx, type_k, type_v, n_batch, flash_attn=flash_attn)
    costs = _Costs(layout, kv_cache_bytes(info, n_ctx, type_k, type_v), estimate)
    split = tuple(tensor_split) if len(tensor_split) > 1 else ()
    return costs.plan(k, split, f"{k} of {total} layers on the GPU, as chosen.")


class _Costs:
    """Bytes of each offload unit on the device that holds it."""

    def __init__(self, layout: ModelLayout, kv_total: int, estimate: MemoryEstimate) -> None:
        n_layer = len(layout.layer_bytes)
        kv_per_layer = kv_total // n_layer if n_layer else 0
        self.layout = layout
        self.unit_bytes = [b + kv_per_layer for b in layout.layer_bytes]
        self.unit_bytes.append(layout.output_bytes)
        self.compute = estimate.compute
        self.output_buffer = estimate.output
        self.kv_per_layer = kv_per_layer

    def placement(self, k: int, split: tuple[float, ...]) -> list[tuple[int, int]]:
        """(units, bytes) on each device when `k` units are offloaded, as llama.cpp places
        them: unit i (block i; n_layer is the output layer) from i_gpu_start on goes to the
        first device whose cumulative split share exceeds (i - i_gpu_start) / k."""
        n_devices = max(len(split), 1)
        bounds = _cumulative(split) if split else [1.0]
        units = [0] * n_devices
        used = [0] * n_devices
        total = len(self.unit_bytes)
        start = total - k
        for unit in range(start, total):
            device = min(bisect.bisect_right(bounds, (unit - start) / k), n_devices - 1)
            units[device] += 1
            used[device] += self.unit_bytes[unit]
        for device in range(n_devices):
            if units[device]:
                used[device] += self.compute
        return list(zip(units, used, strict=True))

    def plan(self, k: int, split: tuple[float, ...], reason: str) -> OffloadPlan:
        total = len(self.unit_bytes)
        per_device = self.placement(k, split) if k else []
        cpu_blocks = self.layout.layer_bytes[: min(total - k, total - 1)]
        ram = self.layout.input_bytes + sum(cpu_blocks) + self.kv_per_layer * len(cpu_blocks)
        if k == 0:
            ram += self.layout.output_cpu_bytes
        if k < total:
            ram += self.compute  # the CPU runs part of every batch
        ram += self.output_buffer
        return OffloadPlan(
            n_gpu_layers=k,
            n_layers_total=total,
            tensor_split=split if k else (),
            layers_per_device=tuple(units for units, _ in per_device),
            vram_per_device=tuple(used for _, used in per_device),
            expected_ram=ram,
            reason=reason,
        )


def _split_for(usable: Sequence[int], compute: int) -> tuple[float, ...]:
    """Shares of the offloaded layers per device, by the room each has for layers once
    its compute buffer is in (a device without room gets none); empty for one device."""
    if len(usable) < 2:
        return ()
    room = [max(u - compute, 0) for u in usable]
    if sum(room) <= 0:
        return tuple(round(1 / len(usable), 4) for _ in usable)
    return tuple(round(r / sum(room), 4) for r in room)


def _cumulative(split: Sequence[float]) -> list[float]:
    total = sum(split) or 1.0
    running = 0.0
    bounds = []
    for share in split:
        running += share
        bounds.append(running / total)
    return bounds


def _free_text(devices_free: Sequence[int]) -> str:
    if len(devices_free) == 1:
        return f"it has {format_bytes(devices_free[0])} free"
    sizes = ", ".join(format_bytes(free) for free in devices_free)
    return f"they have {sizes} free"


def _reason(
    k: int, total: int, devices_free: Sequence[int], margin: int, split: Sequence[float]
) -> str:
    where = "the GPU" if len(devices_free) == 1 else f"{len(devices_free)} GPUs"
    if split:
        where += " (split " + "/".join(f"{share:.2f}" for share in split) + ")"
    spare = f"{format_bytes(margin)} is kept spare" + (" on each" if split else "")
    count = f"All {total} layers fit" if k >= total else f"{k} of {total} layers fit"
    rest = f"; the other {total - k} run on the CPU" if k < total else ""
    return f"{count} on {where}: {_free_text(devices_free)} and {spare}{rest}."
