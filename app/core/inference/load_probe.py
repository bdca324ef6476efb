"""Try a model in a child process before Hearth loads it: crash isolation for loading.

Some GGUF files pass every header check and still make llama.cpp abort (`GGML_ASSERT`) or
segfault while loading or on the first decode; some machines fault on instructions their
CPU reports (AMX tiles in some virtual machines). Any of these would end the whole app. So
the first load of a file with this build happens in a child process (multiprocessing's
"spawn" context): if the child dies, the person is told which file, llama.cpp's last error
or assert line, and what to do, and Hearth keeps running. A child that dies of an illegal
instruction is tried once more without llama.cpp's extra buffer types (AMX and repacked
weights); if that works, Hearth loads the model that way. Verdicts are cached per file and
build (`LoadVerdicts`), so the probe costs a second or two once per file.

This covers loading and the first decode. An abort later in a reply (a GPU running out of
memory mid-reply) still ends the process; the engine-host design in ARCHITECTURE.md moves
all inference into a child for that.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.errors import ModelLoadError
from app.core.gguf_file import read_gguf_info
from app.core.inference.kv_snapshot import llama_build_tag
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_probe_child import ProbeJob, probe_in_child
from app.core.machine.load_verdicts import (
    LoadVerdict,
    LoadVerdicts,
    file_key,
    nan_warning,
    verdict_problem,
)
from app.core.machine.load_verdicts import probe_cache_dir as probe_cache_dir  # re-exported

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 600.0
"""A child still loading after this long is stopped, and the load goes ahead untested."""
_SIGNAL_WORDS = {
    signal.SIGABRT: "an abort (a failed assertion in llama.cpp)",
    signal.SIGSEGV: "a segmentation fault",
    signal.SIGILL: "an illegal instruction",
    signal.SIGBUS: "a bus error",
    signal.SIGFPE: "an arithmetic fault",
}


def checked_options(
    path: Path | str, options: LoadOptions, verdicts: LoadVerdicts
) -> tuple[LoadOptions, list[str]]:
    """The options to load `path` with in this process, after the probe, and warnings.

    The header is read first: a file it refuses (damaged, or with a value that would crash
    llama.cpp) never reaches the probe. Warnings name values that load but make no sense
    (the header's, then NaN or infinite outputs seen by the probe).

    Raises:
        ModelFileError: The header is damaged, or holds a value llama.cpp would crash on
            (the message names the key).
        ModelLoadError: The file crashed llama.cpp in the probe (loading it here would end
            the app); the message names the file, what happened and what to do.
    """
    path = Path(path)
    if not path.is_file():  # the load itself says what is wrong with the path
        return options, []
    warnings = list(read_gguf_info(path).warnings)
    gpu = options.n_gpu_layers != 0
    key = file_key(path, llama_build_tag(), gpu)
    verdict = verdicts.get(key)
    if verdict is None:
        verdict = probe(path, n_gpu_layers=-1 if gpu else 0)
        if verdict is not None:
            verdicts.put(key, verdict)
    if verdict is None:  # timed out: nothing known, load as asked
        return options, warnings
    if verdict.status == "crashed":
        raise ModelLoadError(verdict_problem(path, verdict) or verdict.reason, path=path)
    if not verdict.finite:
        warnings.append(nan_warning(path))
    if verdict.loads and not verdict.use_extra_bufts and options.use_extra_bufts:
        log.info("%s: loading without extra buffer types (%s)", path.name, verdict.reason)
        options = replace(options, use_extra_bufts=False)
    return options, warnings


def probe(
    path: Path, *, n_gpu_layers: int, timeout_s: float = PROBE_TIMEOUT_S
) -> LoadVerdict | None:
    """Load `path` in a child process and read a few tokens; None if it timed out."""
    first = _run_child(path, n_gpu_layers, True, timeout_s)
    if first is None or first.status != "crashed" or "illegal instruction" not in first.reason:
        return first
    second = _run_child(path, n_gpu_layers, False, timeout_s)
    if second is not None and second.loads:
        return replace(
            second,
            use_extra_bufts=False,
            reason="an illegal instruction in llama.cpp's extra buffer types (AMX); it "
            "loads without them",
        )
    return first


def _run_child(
    path: Path, n_gpu_layers: int, use_extra_bufts: bool, timeout_s: float
) -> LoadVerdict | None:
    fd, stderr_name = tempfile.mkstemp(prefix="hearth-probe-", suffix=".log")
    os.close(fd)
    stderr_path = Path(stderr_name)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    job = ProbeJob(str(path), n_gpu_layers, use_extra_bufts, stderr_name)
    child = context.Process(target=probe_in_child, args=(sender, job), name="hearth-load-probe")
    problems: list[str] = []
    outcome: tuple[Any, ...] | None = None
    try:
        child.start()
        sender.close()
        while receiver.poll(timeout_s):
            try:
                message = receiver.recv()
            except EOFError:  # the child ended
                break
            if message[0] == "log":
                problems.append(str(message[2]))
            else:
                outcome = message
        child.join(5 if outcome is not None else timeout_s)
        if child.is_alive():
            child.kill()
            child.join()
            if outcome is None:
                log.warning("the load probe of %s timed out after %.0f s", path, timeout_s)
                return None
        if outcome is not None and outcome[0] == "ok":
            return LoadVerdict("ok", "", use_extra_bufts, bool(outcome[1]))
        if outcome is not None and outcome[0] == "refused":
            said = _refusal(problems) or str(outcome[1])
            return LoadVerdict("refused", said.strip(), use_extra_bufts)
        return LoadVerdict("crashed", _crash_reason(child.exitcode, problems, stderr_path))
    finally:
        receiver.close()
        stderr_path.unlink(missing_ok=True)


def _refusal(problems: list[str]) -> str:
    """llama.cpp's reason for refusing a file: its "error loading model" line (which says
    what is wrong) rather than the generic last one."""
    for line in problems:
        if "error loading model" in line:
            return line.split("error loading model:", 1)[-1].strip()
    return problems[-1] if problems else ""


def _crash_reason(exitcode: int | None, problems: list[str], stderr_path: Path) -> str:
    """What killed the child, with llama.cpp's last words (an assert line if any)."""
    what = "it stopped"
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
            what = _SIGNAL_WORDS.get(sig, sig.name)
        except ValueError:
            what = f"signal {-exitcode}"
    elif exitcode:
        what = f"exit status {exitcode}"
    said = _last_line(stderr_path) or next(
        (line for line in reversed(problems) if line.strip(" .\t")), ""
    )
    if exitcode == -signal.SIGABRT and ("what():" in said or "terminate called" in said):
        what = "an error llama.cpp did not catch (a C++ exception)"
    return f"{what}: {said}" if said else what


def _last_line(path: Path) -> str:
    """The line llama.cpp printed last that says what went wrong: an assert first, then an
    uncaught C++ exception, then any error; else its last line."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip(" .\t")]  # not progress dots
    for marks in (
        ("GGML_ASSERT", "GGML_ABORT"),
        ("what():", "terminate called"),
        ("error", "failed"),
    ):
        for line in reversed(lines):
            if any(mark in line.lower() for mark in map(str.lower, marks)):
                return _short(line)
    return _short(lines[-1]) if lines else ""


def _short(line: str) -> str:
    """A log line without the build folder's long path before the source file's name."""
    if "/llama.cpp/" in line:
        line = line.split("/llama.cpp/", 1)[1]
    return line[:300]
