"""The child process side of quantization: run `llama_model_quantize` and report over a pipe.

`app.core.models.quantize.run_quantize` starts `quantize_in_child` in a process of its own
(multiprocessing's "spawn" context). Only the standard library is imported at module level so
the child starts fast; llama.cpp is imported inside the child. The child sends tuples:

- ``("progress", index, count, tensor_name)`` as llama.cpp starts each tensor, parsed from
  its "[  i/  n] name - [shape], type = ..." log lines;
- ``("log", level, line)`` for every other complete log line (ggml levels, 4 = error);
- ``("done", status)`` with `llama_model_quantize`'s return value (0 = success).

The child's stderr goes to a file the parent names, so an abort that bypasses the log
callback (a failed GGML_ASSERT) can still be quoted.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from app.core.llama_child import llama_capi, redirect_stderr

TENSOR_LINE = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")
"""llama.cpp's per-tensor line: "[  12/ 272] blk.0.attn_q.weight - [...]"."""

GGML_LOG_CONT = 5  # ggml_log_level: a continuation piece of the previous line


@dataclass(frozen=True)
class ChildJob:
    """What the child quantizes, with plain, picklable values.

    Attributes:
        source: The input GGUF.
        output: Where llama.cpp writes (the temporary name beside the real output).
        target: Quantization type name ("Q4_K_M"): `LLAMA_FTYPE_MOSTLY_<target>`.
        threads: Quantizer threads; 0 lets llama.cpp use every hardware thread.
        allow_requantize: Let llama.cpp quantize tensors that are already quantized.
        stderr_path: File that receives the child's stderr, or "" to keep it.
    """

    source: str
    output: str
    target: str
    threads: int
    allow_requantize: bool
    stderr_path: str = ""


class LogLineParser:
    """Joins llama.cpp's log pieces into lines and turns them into pipe messages.

    A tensor's progress is reported as soon as its line starts (llama.cpp then quantizes
    the tensor before finishing the line), every other line once complete.
    """

    def __init__(self, send: Any) -> None:
        self._send = send
        self._buffer = ""
        self._level = 2
        self._reported = False

    def feed(self, level: int, piece: str) -> None:
        """Take one piece of log text at a ggml log level."""
        if level != GGML_LOG_CONT:
            self._level = level
        self._buffer += piece
        if not self._reported:
            match = TENSOR_LINE.match(self._buffer)
            if match:
                self._reported = True
                self._send(("progress", int(match[1]), int(match[2]), match[3]))
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if not self._reported and line.strip():
                self._send(("log", self._level, line))
            self._reported = False
            if self._buffer:
                match = TENSOR_LINE.match(self._buffer)
                if match:
                    self._reported = True
                    self._send(("progress", int(match[1]), int(match[2]), match[3]))


def quantize_in_child(conn: Connection, job: ChildJob) -> None:
    """Entry point of the child process: quantize, report, exit.

    After a clean finish the child leaves with `os._exit`: the output file is closed and
    the report sent, and skipping the interpreter's shutdown (which tears down llama.cpp's
    backends) saves a noticeable part of the child's fixed cost.
    """
    # Ctrl+C reaches the whole process group: the parent decides, and stops the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job.stderr_path:
        redirect_stderr(job.stderr_path)
    try:
        status = _quantize(conn, job)
        conn.send(("done", status))
    finally:
        conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _quantize(conn: Connection, job: ChildJob) -> int:
    capi = llama_capi()

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except OSError:  # the parent is gone: nobody wants the result
            os._exit(3)

    parser = LogLineParser(send)

    def on_log(level: int, text: bytes | None, _user_data: Any) -> None:
        parser.feed(level, (text or b"").decode("utf-8", errors="replace"))

    callback = capi.llama_log_callback(on_log)
    capi.llama_log_set(callback, ctypes.c_void_p(0))
    params = capi.llama_model_quantize_default_params()
    params.ftype = getattr(capi, f"LLAMA_FTYPE_MOSTLY_{job.target}")
    params.nthread = job.threads
    params.allow_requantize = job.allow_requantize
    status = capi.llama_model_quantize(
        os.fsencode(job.source), os.fsencode(job.output), ctypes.byref(params)
    )
    parser.feed(GGML_LOG_CONT, "\n")  # flush a last line without a newline
    return int(status)
