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

This decides whether a file "fits" (the library's verdict) before the engine host loads
it; an abort later (a GPU running out of memory mid-reply) ends the engine host, not the
app (`app.core.host`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.errors import ModelLoadError
from app.core.gguf_file import read_gguf_info
from app.core.inference.kv_snapshot import llama_build_tag
from app.core.inference.load_options import LoadOptions
from app.core.inference.load_probe_child import ProbeJob, probe_in_child
from app.core.llama_child import crash_reason
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
        return LoadVerdict("crashed", crash_reason(child.exitcode, problems, stderr_path))
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
