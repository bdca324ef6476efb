"""`hearth quantize MODEL --to TYPE`: make a smaller model with llama.cpp's quantizer."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from app.cli.common import data_dir_options, open_paths, some_threads

if TYPE_CHECKING:
    from app.core.models.quantize import QuantizeProgress

# Kept here so `hearth quantize --help` answers without importing the core module.
TARGETS = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q2_K")
_BAR_WIDTH = 30
_REDRAW_S = 0.1


def register(sub: Any) -> None:
    """Add the `quantize` subcommand."""
    cmd = sub.add_parser(
        "quantize",
        parents=[data_dir_options()],
        help="quantize a GGUF model to a smaller type with llama.cpp",
        description="Quantize a model with llama.cpp's own quantizer. The result goes to "
        "the models folder (quantized/) unless -o says otherwise.",
    )
    cmd.add_argument("model", metavar="MODEL", help="a .gguf file or a model name")
    cmd.add_argument(
        "--to",
        required=True,
        type=str.upper,
        choices=TARGETS,
        metavar="TYPE",
        help=f"target type: {', '.join(TARGETS)}",
    )
    cmd.add_argument("-o", "--output", type=Path, metavar="OUT", help="the .gguf file to write")
    cmd.add_argument(
        "--allow-requantize",
        action="store_true",
        help="quantize a model that is already quantized (loses more quality)",
    )
    cmd.add_argument(
        "--threads", type=some_threads, metavar="N", help="quantizer threads (default: all)"
    )
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Plan, show the plan, quantize with a progress bar, print the sizes."""
    from app.core.models.library import resolve_model
    from app.core.models.quantize import plan_quantize, run_quantize
    from app.core.units import format_bytes

    paths = open_paths(args)
    source = resolve_model(args.model, paths)
    plan = plan_quantize(
        paths, source, args.to, output=args.output, allow_requantize=args.allow_requantize
    )
    print(f"Quantizing {plan.source} ({plan.source_quant}) to {plan.target}")
    print(f"  output: {plan.output}")
    print(
        f"  predicted size {format_bytes(plan.predicted_size)}, memory to run it about "
        f"{format_bytes(plan.predicted_memory)} ({plan.memory_context:,}-token context)"
    )
    if plan.warning:
        print(f"warning: {plan.warning}", file=sys.stderr)
    bar = ProgressBar(sys.stderr)
    try:
        result = run_quantize(plan, progress=bar.update, threads=args.threads or None)
    finally:
        bar.finish()
    change = result.size_bytes / plan.source_size if plan.source_size else 0.0
    print(f"Done in {result.seconds:.1f} s: {result.output}")
    print(
        f"  size: {format_bytes(plan.source_size)} -> {format_bytes(result.size_bytes)} "
        f"({change:.0%} of the original)"
    )
    print(
        f"  memory to run it: about {format_bytes(plan.predicted_memory)} "
        f"({plan.memory_context:,}-token context)"
    )
    return 0


class ProgressBar:
    """A one-line "tensor i of n" bar, redrawn in place at most every 0.1 s."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = False
        self._last = 0.0

    def update(self, progress: QuantizeProgress) -> None:
        """Redraw for llama.cpp starting a tensor (always for the last one)."""
        now = time.monotonic()
        last = progress.tensor_index == progress.tensor_count
        if not last and now - self._last < _REDRAW_S:
            return
        self._last = now
        filled = round(_BAR_WIDTH * progress.tensor_index / max(progress.tensor_count, 1))
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        line = (
            f"\r[{bar}] tensor {progress.tensor_index}/{progress.tensor_count} "
            f"{progress.tensor_name[:40]:<40}"
        )
        self._stream.write(line)
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
