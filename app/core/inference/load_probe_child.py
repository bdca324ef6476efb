"""The child side of the load probe: load a model, read a few tokens, report over a pipe.

Runs in a process of its own (multiprocessing's "spawn" context), so a model file or a
llama.cpp build that aborts (`GGML_ASSERT`), segfaults or hits an illegal instruction ends
this child, not Hearth. Only the standard library is imported at module level. Messages:

- ``("log", level, line)`` for llama.cpp's warnings and errors;
- ``("refused", text)`` when llama.cpp returned no model or no context;
- ``("ok", finite)`` after the model read a short prompt; `finite` is False when its
  logits held NaN or infinity (damaged weights that would answer "????").
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from app.core.llama_child import llama_capi, quiet_crashes, redirect_stderr

PROBE_CONTEXT = 128
PROBE_TEXT = b"Hello, how are you?"
_WARN = 3  # ggml_log_level: warnings and errors are kept
_CONT = 5  # ggml_log_level: the rest of the previous message (loading progress dots)


@dataclass(frozen=True)
class ProbeJob:
    """What to try, as plain picklable values."""

    path: str
    n_gpu_layers: int
    use_extra_bufts: bool
    stderr_path: str


def probe_in_child(conn: Connection, job: ProbeJob) -> None:
    """Entry point of the child: load, read a few tokens, report, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_crashes()
    redirect_stderr(job.stderr_path)
    try:
        conn.send(_probe(conn, job))
    finally:
        conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip tearing down llama.cpp's backends: the answer is sent


def _probe(conn: Connection, job: ProbeJob) -> tuple[Any, ...]:
    capi = llama_capi()
    pending = [""]
    last_level = [0]

    def on_log(level: int, text: bytes | None, _user_data: Any) -> None:
        if level == _CONT:
            level = last_level[0]
        last_level[0] = level
        pending[0] += (text or b"").decode("utf-8", errors="replace")
        while "\n" in pending[0]:
            line, pending[0] = pending[0].split("\n", 1)
            if level >= _WARN and line.strip():
                conn.send(("log", level, line))

    callback = capi.llama_log_callback(on_log)
    capi.llama_log_set(callback, ctypes.c_void_p(0))
    capi.llama_backend_init()
    params = capi.llama_model_default_params()
    params.n_gpu_layers = job.n_gpu_layers
    params.use_extra_bufts = job.use_extra_bufts
    model = capi.llama_model_load_from_file(os.fsencode(job.path), params)
    if not model:
        return ("refused", "llama.cpp could not load it")
    cparams = capi.llama_context_default_params()
    cparams.n_ctx = PROBE_CONTEXT
    cparams.n_batch = PROBE_CONTEXT
    cparams.n_ubatch = PROBE_CONTEXT
    cparams.n_threads = cparams.n_threads_batch = 1
    ctx = capi.llama_init_from_model(model, cparams)
    if not ctx:
        return ("refused", "llama.cpp could not create a context for it")
    vocab = capi.llama_model_get_vocab(model)
    tokens = (capi.llama_token * 64)()
    n = capi.llama_tokenize(vocab, PROBE_TEXT, len(PROBE_TEXT), tokens, 64, True, False)
    if n <= 0:
        tokens[0] = max(0, int(capi.llama_vocab_bos(vocab)))
        n = 1
    if capi.llama_decode(ctx, capi.llama_batch_get_one(tokens, n)) != 0:
        return ("refused", "llama.cpp could not read a short prompt with it")
    n_vocab = int(capi.llama_vocab_n_tokens(vocab))
    logits = capi.llama_get_logits_ith(ctx, -1)
    finite = all(math.isfinite(logits[i]) for i in range(0, n_vocab, max(1, n_vocab // 4096)))
    return ("ok", finite)
