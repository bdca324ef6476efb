"""Quantize a GGUF model locally with llama.cpp's own quantizer, in a child process.

`plan_quantize` checks everything that can be checked before any work starts (the source,
the target type, requantizing, the output name and folder, free disk space) and predicts the
output's size and the memory to run it. `run_quantize` then runs `llama_model_quantize` in a
child process (multiprocessing's "spawn" context, so it also works in a frozen bundle once
`multiprocessing.freeze_support()` ran): some llama.cpp failures abort the whole process, and
a child can be killed to cancel. The output is written under a temporary name beside the
real one and moved into place only when complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from app.core.errors import HearthError, ModelFileError
from app.core.gguf_file import GGUFInfo, TensorSize, read_gguf_info
from app.core.machine.memory import estimate_memory
from app.core.models.provenance import Origin, record_origin
from app.core.models.quantize_child import ChildJob, quantize_in_child
from app.core.paths import AppPaths
from app.core.units import format_bytes

log = logging.getLogger(__name__)
llama_log = logging.getLogger("llama.cpp.quantize")

QUANT_TARGETS: tuple[str, ...] = (
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "Q3_K_M",
    "Q2_K",
)
"""Types Hearth quantizes to, from the largest (best quality) to the smallest."""

UNQUANTIZED_TYPES = frozenset({"F32", "F16", "BF16"})
"""Source types that quantize without loss beyond the target's own."""

PARTIAL_SUFFIX = ".partial"
QUANTIZED_FOLDER = "quantized"
MEMORY_CONTEXT = 4096
"""Context (tokens) the predicted memory assumes, or the model's own if smaller."""

DISK_MARGIN = 64 * 2**20
"""Free space to leave on top of the predicted output size."""

_STOP_GRACE_S = 2.0
_POLL_S = 0.05
_GGML_ERROR, _GGML_WARN = 4, 3
_QUANT_TAG = re.compile(
    r"[._-](?:f32|f16|bf16|q\d(?:_[01k])?(?:_[sml])?|iq\d_\w+|tq\d_\d)$", re.IGNORECASE
)
_BLOCK = re.compile(r"^blk\.(\d+)\.")

_BASE_TYPE: dict[str, GGMLQuantizationType] = {
    "Q8_0": GGMLQuantizationType.Q8_0,
    "Q6_K": GGMLQuantizationType.Q6_K,
    "Q5_K_M": GGMLQuantizationType.Q5_K,
    "Q5_K_S": GGMLQuantizationType.Q5_K,
    "Q4_K_M": GGMLQuantizationType.Q4_K,
    "Q4_K_S": GGMLQuantizationType.Q4_K,
    "Q4_0": GGMLQuantizationType.Q4_0,
    "Q3_K_M": GGMLQuantizationType.Q3_K,
    "Q2_K": GGMLQuantizationType.Q2_K,
}
# llama.cpp's replacement when a row length is not a multiple of the type's block size.
_FALLBACK: dict[GGMLQuantizationType, GGMLQuantizationType] = {
    GGMLQuantizationType.Q2_K: GGMLQuantizationType.IQ4_NL,
    GGMLQuantizationType.Q3_K: GGMLQuantizationType.IQ4_NL,
    GGMLQuantizationType.Q4_K: GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_K: GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q6_K: GGMLQuantizationType.Q8_0,
}


class QuantizeError(HearthError):
    """A model cannot be quantized as asked, or llama.cpp's quantizer failed."""


class QuantizeCancelled(HearthError):
    """The person cancelled quantizing. Not a failure; the partial output is gone."""


@dataclass(frozen=True)
class QuantizePlan:
    """A checked quantization job, with its predicted outcome. Sizes are in bytes.

    Attributes:
        source: The model to quantize.
        output: The file to make (does not exist yet).
        target: The type to quantize to, one of `QUANT_TARGETS`.
        source_quant: The source's type ("F16", "Q4_1", ...).
        requantize: The source is already quantized (allowed explicitly).
        source_size: The source file's size.
        predicted_size: The output file's predicted size (llama.cpp's mix, roughly).
        predicted_memory: Predicted memory to run the output at `memory_context` tokens.
        warning: What to tell the person before starting (requantizing), else None.
        memory_context: The context `predicted_memory` assumes.
        models_dir: Hearth's models folder: outputs inside it are recorded in provenance.
    """

    source: Path
    output: Path
    target: str
    source_quant: str
    requantize: bool
    source_size: int
    predicted_size: int
    predicted_memory: int
    warning: str | None
    memory_context: int = MEMORY_CONTEXT
    models_dir: Path | None = None


@dataclass(frozen=True)
class QuantizeProgress:
    """llama.cpp started on tensor `tensor_index` (1-based) of `tensor_count`."""

    tensor_index: int
    tensor_count: int
    tensor_name: str

    @property
    def fraction(self) -> float:
        """Share of tensors done before this one, 0.0 to 1.0."""
        return (self.tensor_index - 1) / self.tensor_count if self.tensor_count else 0.0


@dataclass(frozen=True)
class QuantizeResult:
    """A finished quantization: the output file, its size and the time it took."""

    output: Path
    size_bytes: int
    seconds: float


class QuantizeControl:
    """Lets another thread cancel a running `run_quantize` (thread-safe)."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop soon: the child is killed and the partial output removed."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether `cancel` was called."""
        return self._cancelled.is_set()


def default_output(paths: AppPaths, source: Path, target: str) -> Path:
    """`models/quantized/<source stem without its quant tag>-<TARGET>.gguf`."""
    base = _QUANT_TAG.sub("", source.stem) or source.stem
    return paths.models / QUANTIZED_FOLDER / f"{base}-{target}.gguf"


def partial_path(output: Path) -> Path:
    """The temporary name llama.cpp writes to; it does not end in .gguf, so no library lists it."""
    return output.with_name(output.name + PARTIAL_SUFFIX)


def plan_quantize(
    paths: AppPaths,
    source: Path,
    target: str,
    *,
    output: Path | None = None,
    allow_requantize: bool = False,
    free_space: Callable[[Path], int] | None = None,
) -> QuantizePlan:
    """Check a quantization job and predict its outcome, without starting it.

    Args:
        paths: The app's folders; the default output goes to `models/quantized/`.
        source: The GGUF to quantize.
        target: One of `QUANT_TARGETS` (any letter case).
        output: The file to make; default `default_output(paths, source, target)`.
        allow_requantize: Accept a source that is already quantized (quality suffers).
        free_space: Bytes free on the disk holding a folder (default `shutil.disk_usage`).

    Raises:
        ModelFileError: The source is missing, unreadable, damaged or not a model.
        QuantizeError: Unknown target, a quantized source without `allow_requantize`, the
            source already of the target type, a split model, an output that exists or
            cannot be written, or too little free disk space.
    """
    target = _check_target(target)
    source = Path(source).expanduser().absolute()
    info = read_gguf_info(source)
    if info.split_count > 1:
        raise QuantizeError(
            f"'{source.name}' is one part of a model split into {info.split_count} files; "
            "Hearth cannot quantize split models yet. Merge the parts first "
            "(llama-gguf-split --merge) or download a single-file version.",
            path=source,
        )
    source_quant = info.quant.upper()
    if source_quant == target:
        raise QuantizeError(
            f"'{source.name}' is already {target}: pick another target type.", path=source
        )
    requantize = source_quant not in UNQUANTIZED_TYPES
    if requantize and not allow_requantize:
        raise QuantizeError(
            f"'{source.name}' is already quantized ({source_quant}). Quantizing it again "
            "loses more quality than quantizing the original F16/F32 model would. Start from "
            "an F16, BF16 or F32 file if you have one, or allow requantizing (the "
            "--allow-requantize flag) to do it anyway.",
            path=source,
        )
    tensor_bytes = predict_tensor_bytes(info, target)
    predicted_size = info.file_size - info.tensor_bytes + tensor_bytes
    warning = None
    if requantize:
        warning = (
            f"'{source.name}' is already quantized ({source_quant}): requantizing it to "
            f"{target} stacks two rounds of rounding, so the result is worse than a {target} "
            "made from the original F16/F32 model."
        )
        if predicted_size > info.file_size:
            warning += " It will also be larger than the source without being any better."
    output = (
        Path(output).expanduser().absolute() if output else default_output(paths, source, target)
    )
    _check_output(output, source, paths)
    folder = _existing_ancestor(output.parent)
    free = (free_space or _disk_free)(folder)
    if free < predicted_size + DISK_MARGIN:
        raise QuantizeError(
            f"Not enough disk space for '{output.name}': it needs about "
            f"{format_bytes(predicted_size + DISK_MARGIN)} but only {format_bytes(free)} is "
            f"free on the disk holding {folder}. Free some space or choose another folder.",
            path=output,
        )
    context = min(MEMORY_CONTEXT, info.context_length or MEMORY_CONTEXT)
    memory = estimate_memory(dataclasses.replace(info, tensor_bytes=tensor_bytes), context)
    return QuantizePlan(
        source=source,
        output=output,
        target=target,
        source_quant=source_quant,
        requantize=requantize,
        source_size=info.file_size,
        predicted_size=predicted_size,
        predicted_memory=memory.total,
        warning=warning,
        memory_context=context,
        models_dir=paths.models,
    )


def predict_tensor_bytes(info: GGUFInfo, target: str) -> int:
    """Bytes of tensor data after quantizing to `target`, following llama.cpp's type rules.

    Models llama.cpp's choices roughly: 1-D tensors and norms are copied; the output
    (or the tied token embedding) gets Q6_K, or Q8_0 when its rows do not fit K blocks;
    the K-quant mixes give attn_v and ffn_down more bits in some layers; rows that do not
    fit the chosen type's blocks fall back as llama.cpp does.
    """
    base = _BASE_TYPE[_check_target(target)]
    has_output = any(t.name == "output.weight" for t in info.tensors)
    counts = {
        kind: sum(1 for t in info.tensors if kind in t.name) for kind in ("attn_v", "ffn_down")
    }
    n_gqa = info.n_head // info.n_head_kv if info.n_head_kv else 1
    total = 0
    for tensor in info.tensors:
        new_type = _planned_type(tensor, target, base, has_output, counts, n_gqa)
        if new_type is None or not tensor.shape:
            total += _padded(tensor.n_bytes)
            continue
        block, type_size = GGML_QUANT_SIZES[new_type]
        n_elements = 1
        for dim in tensor.shape:
            n_elements *= dim
        total += _padded(n_elements // block * type_size)
    return total


def run_quantize(
    plan: QuantizePlan,
    *,
    progress: Callable[[QuantizeProgress], None] | None = None,
    control: QuantizeControl | None = None,
    threads: int | None = None,
) -> QuantizeResult:
    """Quantize as planned, in a child process; block until done.

    Args:
        plan: From `plan_quantize`.
        progress: Called on this thread as llama.cpp starts each tensor.
        control: Cancel from another thread (or from `progress`).
        threads: Quantizer threads; None lets llama.cpp use every hardware thread.

    Returns:
        The output file (moved into place, recorded in provenance when it is inside the
        models folder), its size and the seconds it took.

    Raises:
        QuantizeCancelled: `control.cancel()` was called; the partial output is removed.
        QuantizeError: The output appeared meanwhile, llama.cpp failed (its last error is
            quoted) or the child process crashed or was killed.
    """
    if threads is not None and threads < 1:
        raise QuantizeError(f"The thread count must be at least 1, not {threads}.")
    if plan.output.exists():
        raise QuantizeError(
            f"'{plan.output}' already exists: delete it or choose another output name.",
            path=plan.output,
        )
    control = control or QuantizeControl()
    partial = partial_path(plan.output)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    handle, stderr_name = tempfile.mkstemp(prefix="hearth-quantize-", suffix=".log")
    os.close(handle)
    stderr_path = Path(stderr_name)
    job = ChildJob(
        source=str(plan.source),
        output=str(partial),
        target=plan.target,
        threads=threads or 0,
        allow_requantize=plan.requantize,
        stderr_path=stderr_name,
    )
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=quantize_in_child, args=(sender, job), name="hearth-quantize", daemon=True
    )
    log.info("quantizing %s to %s -> %s", plan.source, plan.target, plan.output)
    started = time.perf_counter()
    try:
        child.start()
        sender.close()
        status, problems = _follow(child, receiver, progress, control)
        _check_outcome(plan, child, status, problems, stderr_path)
        _check_written(plan, partial)
        os.replace(partial, plan.output)
    except BaseException:
        _stop(child)
        partial.unlink(missing_ok=True)
        raise
    finally:
        receiver.close()
        stderr_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    _record(plan)
    size = plan.output.stat().st_size
    log.info("quantized %s in %.1f s (%s)", plan.output.name, seconds, format_bytes(size))
    return QuantizeResult(output=plan.output, size_bytes=size, seconds=seconds)


def _follow(
    child: BaseProcess,
    receiver: Connection,
    progress: Callable[[QuantizeProgress], None] | None,
    control: QuantizeControl,
) -> tuple[int | None, deque[str]]:
    """Relay the child's messages until it closes the pipe; return its status and errors."""
    status: int | None = None
    problems: deque[str] = deque(maxlen=8)
    while True:
        if control.cancelled:
            raise QuantizeCancelled("Quantizing was cancelled.")
        if not receiver.poll(_POLL_S):
            continue
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            break
        kind = message[0]
        if kind == "progress":
            if progress is not None:
                progress(QuantizeProgress(message[1], message[2], message[3]))
        elif kind == "log":
            level, line = message[1], message[2]
            if level >= _GGML_ERROR:
                problems.append(line.strip())
            llama_log.log(_log_level(level, line), "%s", line)
        elif kind == "done":
            status = message[1]
    child.join()
    return status, problems


def _check_outcome(
    plan: QuantizePlan,
    child: BaseProcess,
    status: int | None,
    problems: deque[str],
    stderr_path: Path,
) -> None:
    """Raise QuantizeError unless the child finished and llama.cpp reported success."""
    said = _strip_function(problems[-1]) if problems else _last_line(stderr_path)
    quote = f" llama.cpp said: {said}" if said else ""
    what = f"Quantizing '{plan.source.name}' to {plan.target} failed."
    code = child.exitcode
    if status is None or code:
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise QuantizeError(
                f"{what} The quantizer process was killed ({name}); a killed quantizer "
                f"often means the computer ran out of memory.{quote} Close other programs "
                "and try again.",
                path=plan.source,
            )
        raise QuantizeError(
            f"{what} The quantizer process stopped unexpectedly (exit status {code}).{quote} "
            "The log file has details.",
            path=plan.source,
        )
    if status != 0:
        raise QuantizeError(
            f"{what}{quote or ' llama.cpp gave no reason; the log file may have details.'}",
            path=plan.source,
        )


def _check_written(plan: QuantizePlan, partial: Path) -> None:
    """Raise QuantizeError unless llama.cpp left a complete, readable GGUF."""
    try:
        read_gguf_info(partial)
    except ModelFileError as exc:
        raise QuantizeError(
            f"Quantizing '{plan.source.name}' to {plan.target} produced an unusable file "
            f"({exc}). It was removed; try again, and check the disk if it happens again.",
            path=plan.output,
        ) from exc


def _stop(child: BaseProcess) -> None:
    """End the child if it still runs: terminate, then kill."""
    if child.pid is None or child.exitcode is not None:
        return
    child.terminate()
    child.join(_STOP_GRACE_S)
    if child.exitcode is None:
        child.kill()
        child.join(_STOP_GRACE_S)


def _record(plan: QuantizePlan) -> None:
    """Record the output's origin when it lies in Hearth's models folder."""
    if plan.models_dir is None:
        return
    if not plan.output.resolve().is_relative_to(plan.models_dir.resolve()):
        return
    record_origin(
        plan.models_dir,
        plan.output,
        Origin(kind="quantize", source=str(plan.source), quant=plan.target),
    )


def _check_target(target: str) -> str:
    wanted = target.strip().upper()
    if wanted not in QUANT_TARGETS:
        raise QuantizeError(
            f"'{target}' is not a quantization type Hearth makes: choose one of "
            f"{', '.join(QUANT_TARGETS)}."
        )
    return wanted


def _check_output(output: Path, source: Path, paths: AppPaths) -> None:
    if output.suffix.lower() != ".gguf":
        raise QuantizeError(f"The output name '{output.name}' must end in .gguf.", path=output)
    if output.exists() or output == source:
        raise QuantizeError(
            f"'{output}' already exists: delete it or choose another output name (-o).",
            path=output,
        )
    folder = output.parent
    if not folder.is_dir():
        inside_models = folder.is_relative_to(paths.models)
        if folder.exists() or not inside_models:
            raise QuantizeError(
                f"The output folder {folder} does not exist: create it or choose another.",
                path=folder,
            )
    writable_folder = _existing_ancestor(folder)
    if not os.access(writable_folder, os.W_OK | os.X_OK):
        raise QuantizeError(
            f"Hearth is not allowed to write in {writable_folder}: choose another output "
            "folder or fix its permissions.",
            path=writable_folder,
        )


def _existing_ancestor(folder: Path) -> Path:
    """`folder` or its nearest ancestor that exists."""
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            return candidate
    return folder


def _disk_free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _planned_type(
    tensor: TensorSize,
    target: str,
    base: GGMLQuantizationType,
    has_output: bool,
    counts: dict[str, int],
    n_gqa: int,
) -> GGMLQuantizationType | None:
    """The type llama.cpp gives a tensor, or None when it copies the tensor unchanged."""
    name = tensor.name
    if len(tensor.shape) < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return None
    if "ffn_gate_inp.weight" in name or name in ("position_embd.weight", "token_types.weight"):
        return None
    new_type = base
    block = _BLOCK.match(name)
    layer = int(block[1]) if block else 0
    row = tensor.shape[0]
    if name == "output.weight" or (not has_output and name == "token_embd.weight"):
        if row % GGML_QUANT_SIZES[base][0]:
            new_type = GGMLQuantizationType.Q8_0
        elif base is not GGMLQuantizationType.Q8_0:
            new_type = GGMLQuantizationType.Q6_K
    elif "attn_v.weight" in name:
        new_type = _attn_v_type(target, base, layer, counts["attn_v"], n_gqa)
    elif "ffn_down" in name:
        new_type = _ffn_down_type(target, base, layer, counts["ffn_down"])
    elif "attn_output.weight" in name:
        new_type = {
            "Q2_K": GGMLQuantizationType.Q3_K,
            "Q3_K_M": GGMLQuantizationType.Q4_K,
        }.get(target, base)
    if row % GGML_QUANT_SIZES[new_type][0]:
        fallback = _FALLBACK.get(new_type, GGMLQuantizationType.F16)
        new_type = (
            fallback if row % GGML_QUANT_SIZES[fallback][0] == 0 else (GGMLQuantizationType.F16)
        )
    if tensor.ggml_type == new_type.name:
        return None
    return new_type


def _use_more_bits(layer: int, n_layers: int) -> bool:
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def _attn_v_type(
    target: str, base: GGMLQuantizationType, layer: int, n_layers: int, n_gqa: int
) -> GGMLQuantizationType:
    if target == "Q2_K":
        return GGMLQuantizationType.Q4_K if n_gqa >= 4 else GGMLQuantizationType.Q3_K
    if target == "Q3_K_M":
        return GGMLQuantizationType.Q5_K if layer < 2 else GGMLQuantizationType.Q4_K
    if target in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n_layers):
        return GGMLQuantizationType.Q6_K
    if target == "Q4_K_S" and layer < 4:
        return GGMLQuantizationType.Q5_K
    return base


def _ffn_down_type(
    target: str, base: GGMLQuantizationType, layer: int, n_layers: int
) -> GGMLQuantizationType:
    if target == "Q2_K":
        return GGMLQuantizationType.Q3_K
    if target == "Q3_K_M":
        return GGMLQuantizationType.Q5_K if layer < n_layers // 16 else GGMLQuantizationType.Q4_K
    if target in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n_layers):
        return GGMLQuantizationType.Q6_K
    if target == "Q4_K_S" and layer < n_layers // 8:
        return GGMLQuantizationType.Q5_K
    return base


def _padded(n_bytes: int, alignment: int = 32) -> int:
    return -(-n_bytes // alignment) * alignment


def _log_level(ggml_level: int, line: str) -> int:
    if ggml_level >= _GGML_ERROR:
        return logging.ERROR
    if ggml_level == _GGML_WARN:
        return logging.INFO if "fall" in line else logging.WARNING  # row-size fallbacks
    return logging.DEBUG if line.startswith(("llama_model_loader:", "[")) else logging.INFO


def _strip_function(line: str) -> str:
    """'llama_model_quantize: failed to quantize: X' -> 'failed to quantize: X'."""
    head, sep, rest = line.partition(": ")
    return rest if sep and head.isidentifier() else line


def _last_line(path: Path) -> str:
    """The last non-empty line of the child's stderr, if any."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        for line in reversed(lines):
            if line:
                return line
    return ""
