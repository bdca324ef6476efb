"""Rows of the context's logits as numpy views, each made once per buffer address."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

_MAX_VIEWS = 4096
"""Views kept at most (one per output row of a batch); all are dropped past it."""


class LogitsRow:
    """`llama_get_logits_ith(ctx, index)` as an array, without rebuilding the view each token.

    `np.ctypeslib.as_array` costs about 90 µs a call (measured in the decode loop); the
    buffer llama.cpp writes the logits into only moves when it grows, so a view is kept
    per row address and reused while llama.cpp returns that address.
    """

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._views: dict[int, npt.NDArray[np.float32]] = {}

    def at(self, ctx: Any, index: int = -1) -> npt.NDArray[np.float32]:
        """A view of the logits of batch position `index` (-1: the last token read)."""
        address = _logits_address(ctx, index) or 0
        view = self._views.get(address)
        if view is None:
            if len(self._views) >= _MAX_VIEWS:
                self._views.clear()
            pointer = llama_cpp.llama_get_logits_ith(ctx, index)
            view = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            self._views[address] = view
        return view


def _address_of_logits() -> Any:
    """`llama_get_logits_ith` returning the address as an int: no pointer object to cast
    back, a third of the call's cost (it runs once a token, between two decodes)."""
    function = ctypes.cast(llama_cpp.llama_get_logits_ith, ctypes.c_void_p).value
    assert function is not None
    return ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32)(function)


_logits_address = _address_of_logits()
