"""What the app and its engine host say to each other over their pipes.

Three pipes join them (see `engine_host` for the parent side, `host_child` for the child):

- **requests** (both ways, the inference worker's thread only): ``(seq, name, args)`` out;
  back come ``("progress", fraction)`` while a model loads, ``("event", event)`` while a
  reply streams (tokens as `TokenBatch`), then one ``("ok", value)`` or
  ``("error", PackedError)``.
- **control** (app to host, any thread): ``("settings", seq, SamplingSettings)`` for the
  reply running now, ``("serve", ServerConfig, parallel)``, ``("unserve",)``. The host reads
  it between two tokens and while idle.
- **notices** (host to app): ``("log", level, logger, text)``, ``("serving", url)``,
  ``("serve_failed", message)``, ``("served", count)``, ``("unserved",)``.

Cancelling needs no message: a shared counter holds the highest request number cancelled,
and the engine's cancel check reads it (`SeqCancel`), so a cancel lands inside a prefill
chunk as fast as in-process. Only the standard library is imported here at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core import errors

if TYPE_CHECKING:
    from app.core.inference.token_data import TokenRecord


@dataclass(frozen=True)
class HostSetup:
    """What the child needs before it imports llama.cpp."""

    stderr_path: str
    log_level: int = logging.INFO


@dataclass(frozen=True)
class TokenBatch:
    """Tokens the host decoded since its last message: the text they add and their
    inspector records (one per token, in order).

    The records are built in the host beside the decode loop (they need the vocabulary's
    bytes), so the app does nothing per token but show them. The `TokenEvent`s stay in
    the host: their alternatives are in the records, and unpickling both cost the app's
    process as much CPU again per token.
    """

    text: str
    records: tuple[TokenRecord, ...]


@dataclass(frozen=True)
class PackedError:
    """An exception raised in the host, as plain values: Hearth's own errors cross with
    their attributes; anything else as its type name and text (its traceback is in the
    log)."""

    type_name: str
    message: str
    attributes: dict[str, Any]


class SeqCancel:
    """The cancel flag of request `seq`, read from the shared "cancelled up to" counter.

    Quacks like the `threading.Event` the engine takes (`is_set`, `set`).
    """

    def __init__(self, counter: Any, seq: int) -> None:
        self._counter = counter
        self._seq = seq

    def is_set(self) -> bool:
        """Whether this request (or a later one) was cancelled."""
        return bool(self._counter.value >= self._seq)

    def set(self) -> None:
        """Cancel this request."""
        if self._counter.value < self._seq:
            self._counter.value = self._seq


def pack_error(exc: BaseException) -> PackedError:
    """`exc` as plain picklable values."""
    if isinstance(exc, errors.HearthError):
        attributes = {k: v for k, v in vars(exc).items() if k != "message"}
        return PackedError(type(exc).__name__, exc.message, attributes)
    return PackedError(type(exc).__name__, str(exc), {})


def unpack_error(packed: PackedError, log_file: str | None = None) -> errors.HearthError:
    """The error to raise in the app for one the host reported."""
    cls = getattr(errors, packed.type_name, None)
    if isinstance(cls, type) and issubclass(cls, errors.HearthError):
        error = cls.__new__(cls)
        Exception.__init__(error, packed.message)
        error.message = packed.message
        error.path = None
        for name, value in packed.attributes.items():
            setattr(error, name, value)
        return error
    where = f"details in the log: {log_file}" if log_file else "details in the log"
    return errors.HearthError(
        f"Unexpected error in the engine: {packed.type_name}: {packed.message} ({where})"
    )
