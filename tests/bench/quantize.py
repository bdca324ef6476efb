"""Quantize benchmark: `run_quantize` (child process, progress on) vs a direct in-process call.

    python -m tests.bench.quantize [--model PATH] [--to TYPE] [--threads N] [--rounds N]

Both sides quantize the same input to the same type with the same thread count, alternately,
several rounds; the direct side is a bare `llama_model_quantize` call in this process with a
silent log callback. Prints the medians and the ratio direct_time / our_time (target >= 0.95:
the child's start-up, the pipe and the header check of the result cost at most 5%).

The default input is a generated F16 llama of about 210 MB (105 M parameters, random
weights, rows that fit K-quant blocks), written once to tests/.cache/bench/. The child's cost
is fixed (about 0.2 s: a Python start-up, the bindings, the result's header check), so the
ratio grows towards 1 with the model; real models take minutes.

Other work on the machine moves single timings a lot, so besides the ratio of the medians
the bench prints the median of the per-round ratios (the two sides of a round run back to
back, under about the same load).

Heavy imports happen inside `main`: the "spawn" child imports this module as its main
module, as it would import the `hearth` launcher script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"
BENCH_MODEL_SHAPE = {
    "n_layer": 8,
    "n_embd": 1024,
    "n_head": 16,
    "n_head_kv": 4,
    "n_ff": 2816,
    "n_vocab": 8192,
    "context_length": 2048,
}


def bench_model() -> Path:
    """The generated F16 input, written once."""
    from tests.gguf_factory import write_tiny_gguf

    path = BENCH_CACHE / "bench-llama-105m-f16.gguf"
    if not path.is_file():
        BENCH_CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        write_tiny_gguf(partial, dtype="f16", name="Bench Llama", **BENCH_MODEL_SHAPE)
        partial.replace(path)
    return path


def direct_quantize(source: Path, output: Path, target: str, threads: int) -> float:
    """Seconds for one bare `llama_model_quantize` call in this process."""
    import ctypes

    import llama_cpp
    from llama_cpp import llama_cpp as capi

    params = capi.llama_model_quantize_default_params()
    params.ftype = getattr(capi, f"LLAMA_FTYPE_MOSTLY_{target}")
    params.nthread = threads
    params.allow_requantize = True
    started = time.perf_counter()
    status = capi.llama_model_quantize(
        str(source).encode(), str(output).encode(), ctypes.byref(params)
    )
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"llama_model_quantize returned {status}")
    del llama_cpp
    return seconds


def ours(source: Path, output: Path, target: str, threads: int, models: Path) -> float:
    """Seconds for `plan_quantize` + `run_quantize` with a progress callback."""
    from app.core.models.quantize import QuantizeProgress, plan_quantize, run_quantize
    from app.core.paths import app_paths

    seen: list[QuantizeProgress] = []
    started = time.perf_counter()
    plan = plan_quantize(app_paths(models), source, target, output=output, allow_requantize=True)
    run_quantize(plan, progress=seen.append, threads=threads)
    seconds = time.perf_counter() - started
    if not seen or seen[-1].tensor_index != seen[-1].tensor_count:
        raise RuntimeError("progress did not reach the last tensor")
    return seconds


def main(argv: list[str] | None = None) -> int:
    import ctypes
    import tempfile

    import llama_cpp

    from app.core.gguf_file import read_gguf_info
    from app.core.machine.hardware import default_threads
    from app.core.units import format_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="input GGUF (default: generated F16)")
    parser.add_argument("--to", default="Q4_K_M", type=str.upper, help="target type")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    source = args.model or bench_model()
    info = read_gguf_info(source)
    silent = llama_cpp.llama_log_callback(lambda _level, _text, _data: None)
    llama_cpp.llama_log_set(silent, ctypes.c_void_p(0))
    print(
        f"input {source.name}: {info.quant}, {format_bytes(info.file_size)}, "
        f"{len(info.tensors)} tensors -> {args.to}, {args.threads} threads, "
        f"{args.rounds} rounds (alternated)"
    )
    direct_s: list[float] = []
    ours_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hearth-bench-quantize-") as scratch:
        folder = Path(scratch)
        direct_out, ours_out = folder / "direct.gguf", folder / "ours.gguf"
        # One warm-up of each: page cache, the shared library.
        direct_quantize(source, direct_out, args.to, args.threads)
        direct_out.unlink()
        ours(source, ours_out, args.to, args.threads, folder / "home")
        ours_out.unlink()
        for round_no in range(args.rounds):
            order = ("direct", "ours") if round_no % 2 == 0 else ("ours", "direct")
            for side in order:
                if side == "direct":
                    direct_s.append(direct_quantize(source, direct_out, args.to, args.threads))
                else:
                    ours_s.append(ours(source, ours_out, args.to, args.threads, folder / "home"))
            print(f"  round {round_no + 1}: direct {direct_s[-1]:.2f} s, ours {ours_s[-1]:.2f} s")
            same_size = direct_out.stat().st_size == ours_out.stat().st_size
            if not same_size:
                raise RuntimeError("the two outputs differ in size")
            direct_out.unlink()
            ours_out.unlink()
    direct_median = statistics.median(direct_s)
    ours_median = statistics.median(ours_s)
    ratio = direct_median / ours_median
    paired = statistics.median(d / o for d, o in zip(direct_s, ours_s, strict=True))
    print(f"{'':28}{'median s':>10}{'min s':>10}{'max s':>10}")
    for label, times in (
        ("direct llama_model_quantize", direct_s),
        ("run_quantize (child)", ours_s),
    ):
        print(f"{label:28}{statistics.median(times):10.3f}{min(times):10.3f}{max(times):10.3f}")
    verdict = "ok" if ratio >= 0.95 else "BELOW TARGET"
    print(f"ratio direct/ours = {ratio:.3f} (target >= 0.95: {verdict})")
    print(f"median of per-round ratios = {paired:.3f}")
    print(f"ratio of the fastest runs = {min(direct_s) / min(ours_s):.3f}")
    print(f"overhead per run = {ours_median - direct_median:+.3f} s")
    fixed = fixed_cost(args.to, args.threads, args.rounds)
    print(f"fixed cost of the child on a 2.5 MiB model (median of {args.rounds}) = {fixed:+.3f} s")
    return 0


def fixed_cost(target: str, threads: int, rounds: int) -> float:
    """Median extra seconds of `run_quantize` over a direct call when there is almost no work."""
    import tempfile

    from tests.gguf_factory import write_tiny_gguf

    extra: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hearth-bench-quantize-") as scratch:
        folder = Path(scratch)
        tiny = write_tiny_gguf(
            folder / "tiny-f16.gguf", dtype="f16", n_embd=256, n_ff=512, n_head=4, n_head_kv=2
        )
        for _ in range(rounds):
            direct = direct_quantize(tiny, folder / "direct.gguf", target, threads)
            ours_s = ours(tiny, folder / "ours.gguf", target, threads, folder / "home")
            extra.append(ours_s - direct)
            (folder / "direct.gguf").unlink()
            (folder / "ours.gguf").unlink()
    return statistics.median(extra)


if __name__ == "__main__":
    sys.exit(main())
